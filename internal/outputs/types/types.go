// Package types lists the vendor output types (every type but webhook,
// which lives with the delivery core) so that the node wires them in one
// line.
package types

import (
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/elasticsearch"
	"github.com/vigil-sec/vigil/internal/outputs/email"
	"github.com/vigil-sec/vigil/internal/outputs/kafka"
	"github.com/vigil-sec/vigil/internal/outputs/loki"
	"github.com/vigil-sec/vigil/internal/outputs/opsgenie"
	"github.com/vigil-sec/vigil/internal/outputs/pagerduty"
	"github.com/vigil-sec/vigil/internal/outputs/slack"
	"github.com/vigil-sec/vigil/internal/outputs/syslog"
	"github.com/vigil-sec/vigil/internal/outputs/teams"
)

// Types returns the vendor output types.
func Types() []outputs.Type {
	return []outputs.Type{
		pagerduty.Type(),
		slack.Type(),
		teams.Type(),
		opsgenie.Type(),
		email.Type(),
		syslog.Type(),
		kafka.Type(),
		elasticsearch.Type(),
		loki.Type(),
	}
}

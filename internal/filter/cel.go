package filter

import (
	"fmt"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/vigil-sec/vigil/internal/event"
)

// celCostLimit bounds the work one expression may do per event, so a
// subscriber cannot stall the hub with an expensive expression.
const celCostLimit = 10_000

// celEnv declares every event field as a CEL variable. Absent numbers read
// as 0 and absent strings as "", so expressions need no has() guards for the
// common case; data is a map of whatever the producer sent.
func newCELEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("id", cel.StringType),
		cel.Variable("seq", cel.IntType),
		cel.Variable("time", cel.TimestampType),
		cel.Variable("received_at", cel.TimestampType),
		cel.Variable("type", cel.StringType),
		cel.Variable("category", cel.StringType),
		cel.Variable("severity", cel.StringType),
		cel.Variable("severity_level", cel.IntType),
		cel.Variable("source", cel.StringType),
		cel.Variable("tenant", cel.StringType),
		cel.Variable("message", cel.StringType),
		cel.Variable("user", cel.StringType),
		cel.Variable("user_id", cel.StringType),
		cel.Variable("src_ip", cel.StringType),
		cel.Variable("resource", cel.StringType),
		cel.Variable("action", cel.StringType),
		cel.Variable("outcome", cel.StringType),
		cel.Variable("confidence", cel.DoubleType),
		cel.Variable("risk_score", cel.DoubleType),
		cel.Variable("mitre_tactics", cel.ListType(cel.StringType)),
		cel.Variable("mitre_techniques", cel.ListType(cel.StringType)),
		cel.Variable("tags", cel.ListType(cel.StringType)),
		cel.Variable("data", cel.MapType(cel.StringType, cel.DynType)),
	)
}

type celProgram struct {
	prg cel.Program
}

func compileExpr(src string) (*celProgram, error) {
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("must evaluate to a bool, not %s", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &celProgram{prg: prg}, nil
}

// match evaluates the program; an evaluation error (a missing data key, a
// cost overrun) is a non-match, never a failure of the subscription.
func (p *celProgram) match(e *event.Event) bool {
	out, _, err := p.prg.Eval(activation(e))
	if err != nil {
		return false
	}
	b, ok := out.(types.Bool)
	return ok && bool(b)
}

func activation(e *event.Event) map[string]any {
	data := e.DataMap()
	if data == nil {
		data = map[string]any{}
	}
	return map[string]any{
		"id": e.ID, "seq": int64(e.Seq), "time": tsOrZero(e.Time), "received_at": tsOrZero(e.ReceivedAt),
		"type": e.Type, "category": string(e.Category), "severity": e.Severity.String(),
		"severity_level": int64(e.Severity), "source": e.Source, "tenant": e.Tenant,
		"message": e.Message, "user": e.User, "user_id": e.UserID, "src_ip": e.SrcIP,
		"resource": e.Resource, "action": e.Action, "outcome": e.Outcome,
		"confidence": deref(e.Confidence), "risk_score": deref(e.RiskScore),
		"mitre_tactics": nonNil(e.MitreTactics), "mitre_techniques": nonNil(e.MitreTechniques),
		"tags": nonNil(e.Tags), "data": data,
	}
}

func tsOrZero(t time.Time) time.Time { return t }

func deref(f *float64) float64 {
	if f == nil {
		return 0
	}
	return *f
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

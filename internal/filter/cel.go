package filter

import (
	"fmt"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

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
		// data values decode as JSON numbers (doubles): let `data.rows > 5`
		// compare a double with an int as a user would expect.
		cel.CrossTypeNumericComparisons(true),
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

// eventActivation resolves CEL variables from the event on demand, so an
// expression that reads two fields does not build a map of all of them.
type eventActivation struct{ e *event.Event }

func activation(e *event.Event) interpreter.Activation { return eventActivation{e} }

func (a eventActivation) Parent() interpreter.Activation { return nil }

func (a eventActivation) ResolveName(name string) (any, bool) {
	e := a.e
	switch name {
	case "id":
		return e.ID, true
	case "seq":
		return int64(e.Seq), true
	case "time":
		return e.Time, true
	case "received_at":
		return e.ReceivedAt, true
	case "type":
		return e.Type, true
	case "category":
		return string(e.Category), true
	case "severity":
		return e.Severity.String(), true
	case "severity_level":
		return int64(e.Severity), true
	case "source":
		return e.Source, true
	case "tenant":
		return e.Tenant, true
	case "message":
		return e.Message, true
	case "user":
		return e.User, true
	case "user_id":
		return e.UserID, true
	case "src_ip":
		return e.SrcIP, true
	case "resource":
		return e.Resource, true
	case "action":
		return e.Action, true
	case "outcome":
		return e.Outcome, true
	case "confidence":
		return deref(e.Confidence), true
	case "risk_score":
		return deref(e.RiskScore), true
	case "mitre_tactics":
		return nonNil(e.MitreTactics), true
	case "mitre_techniques":
		return nonNil(e.MitreTechniques), true
	case "tags":
		return nonNil(e.Tags), true
	case "data":
		if d := e.DataMap(); d != nil {
			return d, true
		}
		return map[string]any{}, true
	}
	return nil, false
}

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

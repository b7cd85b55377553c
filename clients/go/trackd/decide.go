package trackd

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trackd-dev/trackd/clients/go/trackdv1"
)

// DecideOption changes what a decide call does, as the SDKs' OptimizelyDecideOption.
type DecideOption = trackdv1.DecideOption

// The decide options, as the SDKs name them.
const (
	DisableDecisionEvent     = trackdv1.DecideOption_DECIDE_OPTION_DISABLE_DECISION_EVENT
	EnabledFlagsOnly         = trackdv1.DecideOption_DECIDE_OPTION_ENABLED_FLAGS_ONLY
	IgnoreUserProfileService = trackdv1.DecideOption_DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE
	IncludeReasons           = trackdv1.DecideOption_DECIDE_OPTION_INCLUDE_REASONS
	ExcludeVariables         = trackdv1.DecideOption_DECIDE_OPTION_EXCLUDE_VARIABLES
)

// RuleType is the kind of rule that decided a flag, as the SDKs' decision source:
// "experiment", "feature-test", "rollout", "holdout", or "" when no rule decided.
type RuleType string

var ruleTypes = map[trackdv1.RuleType]RuleType{
	trackdv1.RuleType_RULE_TYPE_EXPERIMENT:   "experiment",
	trackdv1.RuleType_RULE_TYPE_FEATURE_TEST: "feature-test",
	trackdv1.RuleType_RULE_TYPE_ROLLOUT:      "rollout",
	trackdv1.RuleType_RULE_TYPE_HOLDOUT:      "holdout",
}

// ErrNoVariable is wrapped by a typed getter's error when the flag has no such variable.
var ErrNoVariable = errors.New("no such variable")

// ErrVariableType is wrapped by a typed getter's error when the variable has another type.
var ErrVariableType = errors.New("variable has another type")

// Decision is one flag's decision, as the SDKs' OptimizelyDecision. Error is set (and
// Enabled false) when the flag could not be decided, e.g. an unknown flag key.
type Decision struct {
	FlagKey            string
	Enabled            bool
	VariationKey       string // "" when no variation was decided
	RuleKey            string // "" when no rule decided
	RuleType           RuleType
	Variables          map[string]any // FromValue's scalars; json variables as map[string]any
	Reasons            []string       // only with IncludeReasons
	ImpressionRecorded bool
	Error              string
}

func decisionFrom(d *trackdv1.FlagDecision) Decision {
	return Decision{
		FlagKey:            d.GetFlagKey(),
		Enabled:            d.GetEnabled(),
		VariationKey:       d.GetVariationKey(),
		RuleKey:            d.GetRuleKey(),
		RuleType:           ruleTypes[d.GetRuleType()],
		Variables:          fromStruct(d.GetVariables()),
		Reasons:            d.GetReasons(),
		ImpressionRecorded: d.GetImpressionRecorded(),
		Error:              d.GetError(),
	}
}

// fromJSONValue reads a variable: FromValue's scalars, and a json variable's lists and
// objects as []any and map[string]any.
func fromJSONValue(v *structpb.Value) any {
	switch k := v.GetKind().(type) {
	case *structpb.Value_ListValue:
		out := make([]any, 0, len(k.ListValue.GetValues()))
		for _, item := range k.ListValue.GetValues() {
			out = append(out, fromJSONValue(item))
		}
		return out
	case *structpb.Value_StructValue:
		return fromStruct(k.StructValue)
	}
	scalar, _ := FromValue(v) // every other kind is a scalar
	return scalar
}

func fromStruct(s *structpb.Struct) map[string]any {
	out := make(map[string]any, len(s.GetFields()))
	for key, value := range s.GetFields() {
		out[key] = fromJSONValue(value)
	}
	return out
}

func (d Decision) variable(key string) (any, error) {
	v, ok := d.Variables[key]
	if !ok {
		return nil, fmt.Errorf("flag %q: %w %q", d.FlagKey, ErrNoVariable, key)
	}
	return v, nil
}

func (d Decision) mismatch(key, want string, v any) error {
	return fmt.Errorf("flag %q: variable %q is %T(%v), not %s: %w", d.FlagKey, key, v, v, want, ErrVariableType)
}

// GetBool returns a boolean variable.
func (d Decision) GetBool(key string) (bool, error) {
	v, err := d.variable(key)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, d.mismatch(key, "boolean", v)
	}
	return b, nil
}

// GetInt returns an integer variable.
func (d Decision) GetInt(key string) (int64, error) {
	v, err := d.variable(key)
	if err != nil {
		return 0, err
	}
	i, ok := v.(int64)
	if !ok {
		return 0, d.mismatch(key, "integer", v)
	}
	return i, nil
}

// GetFloat returns a double variable (one with a whole value arrives as a whole number).
func (d Decision) GetFloat(key string) (float64, error) {
	v, err := d.variable(key)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	}
	return 0, d.mismatch(key, "double", v)
}

// GetString returns a string variable.
func (d Decision) GetString(key string) (string, error) {
	v, err := d.variable(key)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", d.mismatch(key, "string", v)
	}
	return s, nil
}

// GetJSON returns a json variable as an object.
func (d Decision) GetJSON(key string) (map[string]any, error) {
	v, err := d.variable(key)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, d.mismatch(key, "json", v)
	}
	return m, nil
}

// Decide decides one flag for the user, as the SDKs' userContext.Decide(flagKey). An unknown
// flag key is no error: the Decision carries Error. As the SDKs' Decide, it ignores
// EnabledFlagsOnly: one flag always gets its decision (should trackd's
// --default-decide-options drop a disabled flag anyway, a bare disabled Decision stands in).
func (c *Client) Decide(ctx context.Context, userID, flagKey string, attributes map[string]any, opts ...DecideOption) (Decision, error) {
	single := make([]DecideOption, 0, len(opts))
	for _, o := range opts {
		if o != EnabledFlagsOnly {
			single = append(single, o)
		}
	}
	decisions, err := c.DecideForKeys(ctx, userID, []string{flagKey}, attributes, single...)
	if err != nil {
		return Decision{}, err
	}
	for _, d := range decisions {
		if d.FlagKey == flagKey {
			return d, nil
		}
	}
	return Decision{FlagKey: flagKey, Variables: map[string]any{}}, nil
}

// DecideForKeys decides these flags, in their order (EnabledFlagsOnly drops disabled ones).
// No keys decide nothing (DecideAll decides every flag).
func (c *Client) DecideForKeys(ctx context.Context, userID string, flagKeys []string, attributes map[string]any, opts ...DecideOption) ([]Decision, error) {
	if len(flagKeys) == 0 {
		return nil, nil // trackd reads no keys as every flag
	}
	return c.decide(ctx, userID, flagKeys, attributes, opts)
}

// DecideAll decides every flag of trackd's datafile, in the datafile's order.
func (c *Client) DecideAll(ctx context.Context, userID string, attributes map[string]any, opts ...DecideOption) ([]Decision, error) {
	return c.decide(ctx, userID, nil, attributes, opts)
}

func (c *Client) decide(ctx context.Context, userID string, flagKeys []string, attributes map[string]any, opts []DecideOption) ([]Decision, error) {
	attrs, err := ToValueMap("attributes", attributes)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.stub.Decide(ctx, &trackdv1.DecideRequest{
		UserId: userID, Attributes: attrs, FlagKeys: flagKeys, Options: opts,
	})
	if err != nil {
		return nil, err
	}
	out := make([]Decision, 0, len(resp.GetDecisions()))
	for _, d := range resp.GetDecisions() {
		out = append(out, decisionFrom(d))
	}
	return out, nil
}

// SetForcedDecision forces the flag's variation for the user: for one rule, or for the whole
// flag when ruleKey is "".
func (c *Client) SetForcedDecision(ctx context.Context, userID, flagKey, ruleKey, variationKey string) error {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	_, err := c.stub.SetForcedDecision(ctx, &trackdv1.SetForcedDecisionRequest{
		UserId: userID, FlagKey: flagKey, RuleKey: ruleKey, VariationKey: variationKey,
	})
	return err
}

// GetForcedDecision returns the variation forced for the flag (ruleKey "") or rule, or "".
func (c *Client) GetForcedDecision(ctx context.Context, userID, flagKey, ruleKey string) (string, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.stub.GetForcedDecision(ctx, &trackdv1.GetForcedDecisionRequest{
		UserId: userID, FlagKey: flagKey, RuleKey: ruleKey,
	})
	return resp.GetVariationKey(), err
}

// RemoveForcedDecision removes one forced decision; true when there was one.
func (c *Client) RemoveForcedDecision(ctx context.Context, userID, flagKey, ruleKey string) (bool, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.stub.RemoveForcedDecision(ctx, &trackdv1.RemoveForcedDecisionRequest{
		UserId: userID, FlagKey: flagKey, RuleKey: ruleKey,
	})
	return resp.GetRemoved(), err
}

// RemoveAllForcedDecisions removes every forced decision of the user; how many there were.
func (c *Client) RemoveAllForcedDecisions(ctx context.Context, userID string) (uint32, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.stub.RemoveAllForcedDecisions(ctx, &trackdv1.RemoveAllForcedDecisionsRequest{UserId: userID})
	return resp.GetRemoved(), err
}

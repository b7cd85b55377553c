package trackd

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trackd-dev/trackd/clients/go/trackdv1"
)

var testVariables = map[string]any{
	"on": true, "count": 3.0, "ratio": 0.5, "label": "blue",
	"config": map[string]any{"size": 10.0, "tags": []any{"a", "b"}, "nested": map[string]any{"x": nil}},
}

// flagTracking answers as trackd's Decide does for flags "checkout" (an A/B test) and
// "banner" (a rollout), and records the requests it was sent.
type flagTracking struct {
	trackdv1.UnimplementedTrackingServiceServer
	mu       sync.Mutex
	requests []*trackdv1.DecideRequest
	forced   map[[3]string]string
}

func (f *flagTracking) Decide(_ context.Context, req *trackdv1.DecideRequest) (*trackdv1.DecideResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	if req.GetUserId() == "" {
		return nil, status.Error(codes.InvalidArgument, "user_id must not be empty")
	}
	vars, err := structpb.NewStruct(testVariables)
	if err != nil {
		return nil, err
	}
	variation := f.forced[[3]string{req.GetUserId(), "checkout", ""}]
	if variation == "" {
		variation = "treatment"
	}
	known := map[string]*trackdv1.FlagDecision{
		"checkout": {FlagKey: "checkout", Enabled: true, VariationKey: variation, RuleKey: "checkout_test",
			RuleType: trackdv1.RuleType_RULE_TYPE_FEATURE_TEST, Variables: vars, Reasons: []string{"in the test"}, ImpressionRecorded: true},
		"banner": {FlagKey: "banner", VariationKey: "off", RuleKey: "everyone_else", RuleType: trackdv1.RuleType_RULE_TYPE_ROLLOUT},
	}
	keys := req.GetFlagKeys()
	if len(keys) == 0 {
		keys = []string{"checkout", "banner"}
	}
	enabledOnly := req.GetUserId() == "enabled-only-by-default" // as a daemon's default options
	for _, o := range req.GetOptions() {
		enabledOnly = enabledOnly || o == EnabledFlagsOnly
	}
	resp := &trackdv1.DecideResponse{Revision: "7"}
	for _, k := range keys {
		d, ok := known[k]
		if !ok {
			d = &trackdv1.FlagDecision{FlagKey: k, Error: "no flag " + k}
		}
		if !enabledOnly || d.GetEnabled() {
			resp.Decisions = append(resp.Decisions, d)
		}
	}
	return resp, nil
}

func (f *flagTracking) SetForcedDecision(_ context.Context, req *trackdv1.SetForcedDecisionRequest) (*trackdv1.SetForcedDecisionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forced[[3]string{req.GetUserId(), req.GetFlagKey(), req.GetRuleKey()}] = req.GetVariationKey()
	return &trackdv1.SetForcedDecisionResponse{}, nil
}

func (f *flagTracking) GetForcedDecision(_ context.Context, req *trackdv1.GetForcedDecisionRequest) (*trackdv1.GetForcedDecisionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &trackdv1.GetForcedDecisionResponse{VariationKey: f.forced[[3]string{req.GetUserId(), req.GetFlagKey(), req.GetRuleKey()}]}, nil
}

func (f *flagTracking) RemoveForcedDecision(_ context.Context, req *trackdv1.RemoveForcedDecisionRequest) (*trackdv1.RemoveForcedDecisionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := [3]string{req.GetUserId(), req.GetFlagKey(), req.GetRuleKey()}
	_, ok := f.forced[key]
	delete(f.forced, key)
	return &trackdv1.RemoveForcedDecisionResponse{Removed: ok}, nil
}

func (f *flagTracking) RemoveAllForcedDecisions(_ context.Context, req *trackdv1.RemoveAllForcedDecisionsRequest) (*trackdv1.RemoveAllForcedDecisionsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n uint32
	for key := range f.forced {
		if key[0] == req.GetUserId() {
			delete(f.forced, key)
			n++
		}
	}
	return &trackdv1.RemoveAllForcedDecisionsResponse{Removed: n}, nil
}

func serveFlags(t *testing.T) (*Client, *flagTracking) {
	t.Helper()
	f := &flagTracking{forced: map[[3]string]string{}}
	return serve(t, f), f
}

func TestDecideReturnsTheDecisionWithNativeVariables(t *testing.T) {
	c, f := serveFlags(t)
	d, err := c.Decide(context.Background(), "u1", "checkout", map[string]any{"device": "iPhone", "age": 30}, IncludeReasons, DisableDecisionEvent)
	if err != nil {
		t.Fatal(err)
	}
	want := Decision{
		FlagKey: "checkout", Enabled: true, VariationKey: "treatment", RuleKey: "checkout_test", RuleType: "feature-test",
		Variables: map[string]any{
			"on": true, "count": int64(3), "ratio": 0.5, "label": "blue",
			"config": map[string]any{"size": int64(10), "tags": []any{"a", "b"}, "nested": map[string]any{"x": nil}},
		},
		Reasons: []string{"in the test"}, ImpressionRecorded: true,
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Decide = %#v\nwant %#v", d, want)
	}
	req := f.requests[0]
	if !reflect.DeepEqual(req.GetFlagKeys(), []string{"checkout"}) ||
		!reflect.DeepEqual(req.GetOptions(), []DecideOption{IncludeReasons, DisableDecisionEvent}) ||
		req.GetAttributes()["age"].GetNumberValue() != 30 || req.GetAttributes()["device"].GetStringValue() != "iPhone" {
		t.Fatalf("request = %v", req)
	}
}

func TestTypedGettersReturnGoTypesAndRefuseOtherTypes(t *testing.T) {
	c, _ := serveFlags(t)
	d, err := c.Decide(context.Background(), "u1", "checkout", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := d.GetBool("on"); !b || err != nil {
		t.Errorf("GetBool = %v, %v", b, err)
	}
	if i, err := d.GetInt("count"); i != 3 || err != nil {
		t.Errorf("GetInt = %v, %v", i, err)
	}
	if x, err := d.GetFloat("ratio"); x != 0.5 || err != nil {
		t.Errorf("GetFloat = %v, %v", x, err)
	}
	if x, err := d.GetFloat("count"); x != 3 || err != nil {
		t.Errorf("GetFloat of a whole value = %v, %v", x, err)
	}
	if s, err := d.GetString("label"); s != "blue" || err != nil {
		t.Errorf("GetString = %v, %v", s, err)
	}
	if m, err := d.GetJSON("config"); err != nil || !reflect.DeepEqual(m["tags"], []any{"a", "b"}) {
		t.Errorf("GetJSON = %v, %v", m, err)
	}
	if _, err := d.GetInt("label"); !errors.Is(err, ErrVariableType) || err.Error() != `flag "checkout": variable "label" is string(blue), not integer: variable has another type` {
		t.Errorf("GetInt of a string: %v", err)
	}
	if _, err := d.GetBool("count"); !errors.Is(err, ErrVariableType) {
		t.Errorf("GetBool of a number: %v", err)
	}
	if _, err := d.GetInt("ratio"); !errors.Is(err, ErrVariableType) {
		t.Errorf("GetInt of 0.5: %v", err)
	}
	if _, err := d.GetJSON("label"); !errors.Is(err, ErrVariableType) {
		t.Errorf("GetJSON of a string: %v", err)
	}
	if _, err := d.GetString("missing"); !errors.Is(err, ErrNoVariable) {
		t.Errorf("GetString of a missing variable: %v", err)
	}
}

func TestDecideAllAndForKeysKeepTrackdsOrderAndErrors(t *testing.T) {
	c, f := serveFlags(t)
	ctx := context.Background()
	keysOf := func(ds []Decision, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, d := range ds {
			out = append(out, d.FlagKey)
		}
		return out
	}
	if got := keysOf(c.DecideAll(ctx, "u1", nil)); !reflect.DeepEqual(got, []string{"checkout", "banner"}) {
		t.Errorf("DecideAll = %v", got)
	}
	some, err := c.DecideForKeys(ctx, "u1", []string{"banner", "nope", "checkout"}, nil)
	if got := keysOf(some, err); !reflect.DeepEqual(got, []string{"banner", "nope", "checkout"}) {
		t.Errorf("DecideForKeys = %v", got)
	}
	if some[0].RuleType != "rollout" || some[0].Enabled || some[1].Error != "no flag nope" || some[1].Enabled || some[1].RuleType != "" {
		t.Errorf("decisions = %+v", some)
	}
	if got := keysOf(c.DecideAll(ctx, "u1", nil, EnabledFlagsOnly)); !reflect.DeepEqual(got, []string{"checkout"}) {
		t.Errorf("DecideAll(EnabledFlagsOnly) = %v", got)
	}
	// As the SDKs' Decide: one flag always answers, EnabledFlagsOnly is not sent.
	banner, err := c.Decide(ctx, "u1", "banner", nil, EnabledFlagsOnly)
	if err != nil || banner.Enabled || banner.VariationKey != "off" || banner.RuleKey != "everyone_else" {
		t.Errorf("Decide(EnabledFlagsOnly) of a disabled flag = %+v, %v", banner, err)
	}
	if opts := f.requests[len(f.requests)-1].GetOptions(); len(opts) != 0 {
		t.Errorf("Decide sent options %v", opts)
	}
	dropped, err := c.Decide(ctx, "enabled-only-by-default", "banner", nil)
	if err != nil || dropped.FlagKey != "banner" || dropped.Enabled || dropped.VariationKey != "" {
		t.Errorf("Decide of a flag the daemon left out = %+v, %v", dropped, err)
	}
	if none, err := c.DecideForKeys(ctx, "u1", nil, nil); none != nil || err != nil {
		t.Errorf("DecideForKeys(no keys) = %v, %v", none, err)
	}
	if len(f.requests) != 5 {
		t.Errorf("%d requests, want 5 (no keys sends none)", len(f.requests))
	}
}

func TestDecideErrorsAreStatusErrors(t *testing.T) {
	c, f := serveFlags(t)
	if _, err := c.Decide(context.Background(), "", "checkout", nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty user: %v", err)
	}
	var ve *ValueError
	if _, err := c.Decide(context.Background(), "u1", "checkout", map[string]any{"list": []int{1}}); !errors.As(err, &ve) || ve.Key != "list" {
		t.Errorf("bad attribute: %v", err)
	}
	if len(f.requests) != 1 {
		t.Errorf("a bad attribute reached the server")
	}
}

func TestForcedDecisionsSetGetRemove(t *testing.T) {
	c, _ := serveFlags(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if v, err := c.GetForcedDecision(ctx, "u1", "checkout", ""); v != "" || err != nil {
		t.Fatalf("GetForcedDecision before = %q, %v", v, err)
	}
	must(c.SetForcedDecision(ctx, "u1", "checkout", "", "control"))
	must(c.SetForcedDecision(ctx, "u1", "checkout", "checkout_test", "treatment"))
	must(c.SetForcedDecision(ctx, "u2", "checkout", "", "control"))
	if v, _ := c.GetForcedDecision(ctx, "u1", "checkout", "checkout_test"); v != "treatment" {
		t.Errorf("rule's forced decision = %q", v)
	}
	if d, _ := c.Decide(ctx, "u1", "checkout", nil); d.VariationKey != "control" {
		t.Errorf("forced decide = %+v", d)
	}
	if ok, err := c.RemoveForcedDecision(ctx, "u1", "checkout", ""); !ok || err != nil {
		t.Errorf("RemoveForcedDecision = %v, %v", ok, err)
	}
	if ok, _ := c.RemoveForcedDecision(ctx, "u1", "checkout", ""); ok {
		t.Errorf("removed twice")
	}
	if n, err := c.RemoveAllForcedDecisions(ctx, "u1"); n != 1 || err != nil {
		t.Errorf("RemoveAllForcedDecisions = %v, %v", n, err)
	}
	if v, _ := c.GetForcedDecision(ctx, "u2", "checkout", ""); v != "control" {
		t.Errorf("another user's forced decision went too: %q", v)
	}
}

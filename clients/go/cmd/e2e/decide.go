package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/trackd-dev/trackd/clients/go/trackd"
)

// decideReport is the decide part of the report (docs/dev/clients-e2e.md).
type decideReport struct {
	Decisions        map[string][]any `json:"decisions"`
	All              []string         `json:"all"`
	Variables        map[string]any   `json:"variables"`
	TypeError        bool             `json:"type_error"`
	UnknownFlagError bool             `json:"unknown_flag_error"`
	Forced           []any            `json:"forced"`
	Attributed       []string         `json:"attributed"`
	Impressions      []bool           `json:"impressions"`
}

func orNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func decide(ctx context.Context, client *trackd.Client, runID string) (decideReport, error) {
	out := decideReport{Decisions: map[string][]any{}, All: []string{}, Attributed: []string{}}
	quietRecorded := false
	for n := range 50 {
		device := "Android"
		if n%3 != 0 {
			device = "iPhone"
		}
		user := fmt.Sprintf("user-%d", n)
		d, err := client.Decide(ctx, user, "e2e_checkout", map[string]any{"device": device}, trackd.DisableDecisionEvent)
		if err != nil {
			return out, err
		}
		out.Decisions[user] = []any{d.Enabled, orNil(d.VariationKey), orNil(d.RuleKey), orNil(string(d.RuleType))}
		quietRecorded = quietRecorded || d.ImpressionRecorded
	}
	every, err := client.DecideAll(ctx, "user-1", map[string]any{"device": "iPhone"}, trackd.DisableDecisionEvent)
	if err != nil {
		return out, err
	}
	for _, d := range every {
		out.All = append(out.All, d.FlagKey)
	}

	forcedUser := fmt.Sprintf("forced-%s-%s", language, runID)
	if err := client.SetForcedDecision(ctx, forcedUser, "e2e_checkout", "", "treatment"); err != nil {
		return out, err
	}
	t, err := client.Decide(ctx, forcedUser, "e2e_checkout", nil, trackd.DisableDecisionEvent)
	if err != nil {
		return out, err
	}
	showBanner, err1 := t.GetBool("show_banner")
	maxItems, err2 := t.GetInt("max_items")
	discount, err3 := t.GetFloat("discount")
	title, err4 := t.GetString("title")
	layout, err5 := t.GetJSON("layout")
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return out, err
	}
	out.Variables = map[string]any{
		"show_banner": showBanner, "max_items": maxItems, "discount": discount, "title": title, "layout": layout,
	}
	_, err = t.GetInt("title")
	out.TypeError = errors.Is(err, trackd.ErrVariableType)

	got, err := client.GetForcedDecision(ctx, forcedUser, "e2e_checkout", "")
	if err != nil {
		return out, err
	}
	removed, err := client.RemoveForcedDecision(ctx, forcedUser, "e2e_checkout", "")
	if err != nil {
		return out, err
	}
	again, err := client.RemoveForcedDecision(ctx, forcedUser, "e2e_checkout", "")
	if err != nil {
		return out, err
	}
	if err := errors.Join(
		client.SetForcedDecision(ctx, forcedUser, "e2e_checkout", "", "control"),
		client.SetForcedDecision(ctx, forcedUser, "e2e_checkout", "checkout_test", "control"),
	); err != nil {
		return out, err
	}
	all, err := client.RemoveAllForcedDecisions(ctx, forcedUser)
	if err != nil {
		return out, err
	}
	out.Forced = []any{got, removed, again, all}

	unknown, err := client.Decide(ctx, forcedUser, "no_such_flag", nil)
	if err != nil {
		return out, err
	}
	out.UnknownFlagError = unknown.Error != "" && !unknown.Enabled

	user := fmt.Sprintf("e2e-%s-%s-flag", language, runID)
	recorded, err := client.Decide(ctx, user, "e2e_checkout", map[string]any{"device": "iPhone"})
	if err != nil {
		return out, err
	}
	out.Impressions = []bool{quietRecorded, recorded.ImpressionRecorded}
	attributions, err := client.Track(ctx, "checkout_conversion", user, map[string]any{"device": "iPhone"}, nil)
	if err != nil {
		return out, err
	}
	for _, a := range attributions {
		out.Attributed = append(out.Attributed, a.ExperimentKey)
	}
	return out, nil
}

package trackd

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// With TRACKD_ADDRESS set (a trackd serving tests/data/datafile.json), these run against it.
func liveClient(t *testing.T) *Client {
	t.Helper()
	address := os.Getenv("TRACKD_ADDRESS")
	if address == "" {
		t.Skip("TRACKD_ADDRESS is not set")
	}
	c, err := New(address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestLiveActivateThenTrackIsAttributed(t *testing.T) {
	c := liveClient(t)
	ctx := context.Background()
	user := fmt.Sprintf("go-it-%d", time.Now().UnixNano())
	variation, err := c.Activate(ctx, "ab_running", user, nil)
	if err != nil || variation == "" {
		t.Fatalf("Activate = %q, %v", variation, err)
	}
	got, err := c.Track(ctx, "my_conversion", user, map[string]any{"device": "iPhone"}, map[string]any{"revenue": 4200})
	if err != nil || len(got) != 1 || got[0].ExperimentKey != "ab_running" || got[0].VariationKey != variation {
		t.Fatalf("Track = %+v, %v", got, err)
	}
}

func TestLiveNotInAVariationIsEmptyAndUnknownEventIsNotFound(t *testing.T) {
	c := liveClient(t)
	ctx := context.Background()
	if v, err := c.Activate(ctx, "ab_iphone", "u", map[string]any{"device": "Android"}); v != "" || err != nil {
		t.Fatalf("Activate for a non-matching audience = %q, %v", v, err)
	}
	if _, err := c.Track(ctx, "no_such_event", "u", nil, nil); !IsNotFound(err) {
		t.Fatalf("err = %v, want NotFound", err)
	}
	if _, err := c.Activate(ctx, "no_such_experiment", "u", nil); !IsNotFound(err) {
		t.Fatalf("err = %v, want NotFound", err)
	}
}

func TestLiveProducerDeliversEveryEvent(t *testing.T) {
	c := liveClient(t)
	p := c.NewProducer(ProducerConfig{BatchSize: 250})
	for i := range 1000 {
		if err := p.Send(context.Background(), "signup", fmt.Sprintf("go-it-p-%d", i), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	stats := closeProducer(t, p)
	if stats.Acked != 1000 || stats.Batches != 4 {
		t.Fatalf("stats = %+v", stats)
	}
}

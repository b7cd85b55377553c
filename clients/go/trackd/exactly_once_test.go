package trackd

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trackd-dev/trackd/clients/go/trackdv1"
)

type received struct {
	producerID string
	sequence   uint64
	users      string
}

// dedupTracking dedups (producer_id, sequence) as trackd does. It stores the first loseAcks
// batches and then drops their streams before acknowledging them (the ack lost with the
// connection). Activate and Track answer as trackd does while its Redis is unreachable.
type dedupTracking struct {
	trackdv1.UnimplementedTrackingServiceServer
	mu                 sync.Mutex
	loseAcks           int
	attributionUnknown bool
	stored             map[string]int
	committed          map[string]uint32
	received           []received
}

func (f *dedupTracking) TrackStream(stream trackdv1.TrackingService_TrackStreamServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		users := ""
		for _, e := range req.GetEvents() {
			users += e.GetUserId() + ","
		}
		key := fmt.Sprintf("%s/%d", req.GetProducerId(), req.GetSequence())
		resp := &trackdv1.TrackStreamResponse{Sequence: req.GetSequence(), AttributionUnknown: f.attributionUnknown}
		f.mu.Lock()
		f.received = append(f.received, received{req.GetProducerId(), req.GetSequence(), users})
		if n, ok := f.committed[key]; ok && req.GetProducerId() != "" {
			resp.Accepted, resp.Duplicate = n, true
		} else {
			for _, e := range req.GetEvents() {
				f.stored[e.GetUserId()]++
			}
			resp.Accepted = uint32(len(req.GetEvents()))
			f.committed[key] = resp.Accepted
			if f.loseAcks > 0 {
				f.loseAcks--
				f.mu.Unlock()
				return status.Error(codes.Unavailable, "stored, then the link broke")
			}
		}
		f.mu.Unlock()
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (f *dedupTracking) Activate(context.Context, *trackdv1.ActivateRequest) (*trackdv1.ActivateResponse, error) {
	return &trackdv1.ActivateResponse{VariationKey: "a", AttributionDegraded: true}, nil
}

func (f *dedupTracking) Track(context.Context, *trackdv1.TrackRequest) (*trackdv1.TrackResponse, error) {
	return &trackdv1.TrackResponse{Uuid: "u-1", AttributionUnknown: true}, nil
}

func serveDedup(t *testing.T, f *dedupTracking) *Client {
	t.Helper()
	f.stored, f.committed = map[string]int{}, map[string]uint32{}
	return serve(t, f)
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestProducerResendsABatchStoredBeforeTheStreamBrokeWithItsIDAndItIsStoredOnce(t *testing.T) {
	f := &dedupTracking{loseAcks: 2}
	p := serveDedup(t, f).NewProducer(ProducerConfig{BatchSize: 10, MaxInFlight: 1, BackoffInitial: time.Millisecond})
	sendN(t, p, 100, "signup")
	stats := closeProducer(t, p)
	if stats.Acked != 100 || stats.Duplicates != 2 || stats.StreamFailures != 2 || stats.Pending != 0 {
		t.Fatalf("stats = %+v", stats)
	}
	for user, n := range f.stored {
		if n != 1 {
			t.Fatalf("user %s stored %d times", user, n)
		}
	}
	if len(f.stored) != 100 {
		t.Fatalf("stored %d distinct users, want 100", len(f.stored))
	}
	if !uuidPattern.MatchString(p.ProducerID()) {
		t.Fatalf("ProducerID() = %q, want a random UUID", p.ProducerID())
	}
	if f.received[0] != f.received[1] {
		t.Fatalf("the batch resent after the break differs: %+v then %+v", f.received[0], f.received[1])
	}
	seen := map[uint64]bool{}
	var last uint64
	for _, r := range f.received {
		if r.producerID != p.ProducerID() {
			t.Fatalf("batch with producer_id %q", r.producerID)
		}
		if !seen[r.sequence] && r.sequence <= last {
			t.Fatalf("sequence %d first sent after %d", r.sequence, last)
		}
		seen[r.sequence], last = true, max(last, r.sequence)
	}
	if len(seen) != 10 {
		t.Fatalf("%d sequences for 10 batches", len(seen))
	}
}

func TestANamedProducerRestartedDoesNotReuseSequences(t *testing.T) {
	f := &dedupTracking{}
	client := serveDedup(t, f)
	for range 2 {
		p := client.NewProducer(ProducerConfig{BatchSize: 5, ProducerID: "checkout-1"})
		sendN(t, p, 10, "signup")
		if stats := closeProducer(t, p); stats.Duplicates != 0 {
			t.Fatalf("stats = %+v", stats)
		}
	}
	for _, r := range f.received {
		if r.producerID != "checkout-1" {
			t.Fatalf("producer_id %q", r.producerID)
		}
	}
	if f.stored["u0"] != 2 {
		t.Fatalf("u0 stored %d times, want once per producer", f.stored["u0"])
	}
}

func TestProducerCountsEventsStoredWithoutAttribution(t *testing.T) {
	p := serveDedup(t, &dedupTracking{attributionUnknown: true}).NewProducer(ProducerConfig{BatchSize: 10})
	sendN(t, p, 30, "signup")
	if stats := closeProducer(t, p); stats.AttributionUnknown != 30 {
		t.Fatalf("stats = %+v", stats)
	}
}

func TestDetailCallsCarryAttributionDegradedAndUnknown(t *testing.T) {
	client := serveDedup(t, &dedupTracking{})
	ctx := context.Background()
	activation, err := client.ActivateDetail(ctx, "ab_running", "u", nil)
	if err != nil || !activation.GetAttributionDegraded() {
		t.Fatalf("ActivateDetail = %v, %v", activation, err)
	}
	conversion, err := client.TrackDetail(ctx, "my_conversion", "u", nil, map[string]any{"revenue": 1})
	if err != nil || !conversion.GetAttributionUnknown() || conversion.GetUuid() != "u-1" {
		t.Fatalf("TrackDetail = %v, %v", conversion, err)
	}
}

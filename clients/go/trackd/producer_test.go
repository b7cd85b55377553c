package trackd

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/trackd-dev/trackd/clients/go/trackdv1"
)

// fakeTracking acks every batch; it breaks the first breakStreams streams after one ack and
// answers the first batch with RESOURCE_EXHAUSTED when busyOnce is set.
type fakeTracking struct {
	trackdv1.UnimplementedTrackingServiceServer
	mu           sync.Mutex
	breakStreams int
	busyOnce     bool
	stored       map[string]int
}

func (f *fakeTracking) TrackStream(stream trackdv1.TrackingService_TrackStreamServer) error {
	acks := 0
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		f.mu.Lock()
		if f.breakStreams > 0 && acks == 1 {
			f.breakStreams--
			f.mu.Unlock()
			return status.Error(codes.Unavailable, "injected failure")
		}
		resp := &trackdv1.TrackStreamResponse{Sequence: req.GetSequence()}
		if f.busyOnce {
			f.busyOnce = false
			resp.Code, resp.Message = uint32(codes.ResourceExhausted), "outbox full"
		} else {
			for i, e := range req.GetEvents() {
				if e.GetEventKey() == "unknown" {
					resp.Errors = append(resp.Errors, &trackdv1.EventError{Index: uint32(i), Code: uint32(codes.NotFound), Message: "no such event"})
					continue
				}
				resp.Accepted++
				f.stored[e.GetUserId()]++
			}
		}
		f.mu.Unlock()
		acks++
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func serveFake(t *testing.T, f *fakeTracking) *Client {
	t.Helper()
	f.stored = map[string]int{}
	return serve(t, f)
}

// serve runs a fake TrackingService in memory (bufconn) and returns a client of it; both
// stop when the test ends.
func serve(t *testing.T, f trackdv1.TrackingServiceServer) *Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	trackdv1.RegisterTrackingServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	client, err := New("passthrough:///bufnet", WithDialOptions(
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func sendN(t *testing.T, p *Producer, n int, key string) {
	t.Helper()
	for i := range n {
		if err := p.Send(context.Background(), key, fmt.Sprintf("u%d", i), map[string]any{"device": "iPhone"}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func closeProducer(t *testing.T, p *Producer) ProducerStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stats, err := p.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

func TestProducerAcknowledgesEveryEventInSizeBatches(t *testing.T) {
	f := &fakeTracking{}
	p := serveFake(t, f).NewProducer(ProducerConfig{BatchSize: 100, FlushInterval: time.Minute})
	sendN(t, p, 1050, "signup")
	stats := closeProducer(t, p)
	if stats.Sent != 1050 || stats.Acked != 1050 || stats.Batches != 11 || stats.Pending != 0 {
		t.Fatalf("stats = %+v", stats)
	}
	if len(f.stored) != 1050 {
		t.Fatalf("stored %d distinct users", len(f.stored))
	}
}

func TestProducerSendsAPartialBatchWhenTheIntervalPasses(t *testing.T) {
	p := serveFake(t, &fakeTracking{}).NewProducer(ProducerConfig{BatchSize: 1000, FlushInterval: 20 * time.Millisecond})
	sendN(t, p, 1, "signup")
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Acked != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not acknowledged by the interval: %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	closeProducer(t, p)
}

func TestProducerResendsUnacknowledgedBatchesAfterAStreamFailure(t *testing.T) {
	f := &fakeTracking{breakStreams: 2}
	p := serveFake(t, f).NewProducer(ProducerConfig{BatchSize: 10, BackoffInitial: time.Millisecond})
	sendN(t, p, 200, "signup")
	stats := closeProducer(t, p)
	if stats.Acked != 200 || stats.Pending != 0 || stats.StreamFailures != 2 || stats.RetriedBatches < 2 {
		t.Fatalf("stats = %+v", stats)
	}
	if len(f.stored) != 200 {
		t.Fatalf("stored %d distinct users, want all 200 (at least once)", len(f.stored))
	}
}

func TestProducerRetriesABatchRefusedAsBusy(t *testing.T) {
	p := serveFake(t, &fakeTracking{busyOnce: true}).NewProducer(ProducerConfig{BatchSize: 5, BackoffInitial: time.Millisecond})
	sendN(t, p, 20, "signup")
	stats := closeProducer(t, p)
	if stats.Acked != 20 || stats.RetriedBatches != 1 {
		t.Fatalf("stats = %+v", stats)
	}
}

func TestProducerReportsEventsRefusedOneByOneWithoutRetrying(t *testing.T) {
	var mu sync.Mutex
	var rejected []Rejection
	p := serveFake(t, &fakeTracking{}).NewProducer(ProducerConfig{BatchSize: 10, OnError: func(r Rejection) {
		mu.Lock()
		defer mu.Unlock()
		rejected = append(rejected, r)
	}})
	sendN(t, p, 1, "signup")
	sendN(t, p, 1, "unknown")
	stats := closeProducer(t, p)
	if stats.Acked != 1 || stats.Rejected != 1 || stats.RetriedBatches != 0 {
		t.Fatalf("stats = %+v", stats)
	}
	if len(rejected) != 1 || rejected[0].Index != 1 || !IsNotFound(rejected[0].Err) {
		t.Fatalf("rejected = %+v", rejected)
	}
}

func TestSendRefusesBadValuesBeforeBuffering(t *testing.T) {
	p := serveFake(t, &fakeTracking{}).NewProducer(ProducerConfig{})
	err := p.Send(context.Background(), "signup", "u", map[string]any{"list": []int{1}}, nil)
	if !IsInvalidArgument(err) {
		t.Fatalf("err = %v", err)
	}
	if stats := closeProducer(t, p); stats.Enqueued != 0 {
		t.Fatalf("stats = %+v", stats)
	}
}

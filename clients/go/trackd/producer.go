package trackd

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trackd-dev/trackd/clients/go/trackdv1"
)

// ProducerConfig tunes a Producer; zero fields take the defaults shown.
type ProducerConfig struct {
	BatchSize      int           // events per batch (500); trackd's default limit is 10,000
	FlushInterval  time.Duration // longest an event waits for its batch to fill (1s)
	MaxBuffered    int           // events held before Send blocks (100,000)
	MaxInFlight    int           // batches sent ahead of their acknowledgements (4)
	MaxAttempts    int           // sends of one batch before it is dropped (0: until Close's ctx ends)
	BackoffInitial time.Duration // first wait before reopening a failed stream (100ms)
	BackoffMax     time.Duration // longest wait between reopenings (5s)
	// OnError, if set, is called from the producer's goroutine with each Rejection.
	OnError func(Rejection)
	// ProducerID is this producer's identity for trackd's deduplication of resent batches
	// (at most 128 bytes; default a random UUID). Never run two producers with one id at once.
	ProducerID string
}

// ProducerStats counts what a Producer did.
type ProducerStats struct {
	Enqueued       int64 `json:"enqueued"`        // events given to Send
	Sent           int64 `json:"sent"`            // events sent at least once
	Acked          int64 `json:"acked"`           // events trackd acknowledged as stored
	Rejected       int64 `json:"rejected"`        // events trackd refused one by one (not retried)
	Dropped        int64 `json:"dropped"`         // events of whole batches given up
	Batches        int64 `json:"batches"`         // batches acknowledged
	RetriedBatches int64 `json:"retried_batches"` // batch sends that were repeats
	StreamFailures int64 `json:"stream_failures"` // streams that broke and were reopened
	// Resent batches trackd had already stored: acknowledged again, not stored again.
	Duplicates int64 `json:"duplicates"`
	// Events stored without attributions because trackd could not reach its Redis.
	AttributionUnknown int64 `json:"attribution_unknown"`
	Pending            int64 `json:"pending"` // events buffered or unacknowledged
}

// Rejection reports events trackd did not store: one event of a batch (Index >= 0), or a
// whole batch (Index == -1: over trackd's batch limit, or out of attempts).
type Rejection struct {
	Err    error // a gRPC status error
	Events []*trackdv1.TrackRequest
	Index  int
}

// Producer sends events to TrackStream in batches from its own goroutine: a batch goes out
// when BatchSize events are buffered or the oldest has waited FlushInterval, and counts as
// delivered only when trackd acknowledges it (after storing it durably).
//
// Delivery is exactly once within trackd's dedup window: every batch carries the producer's
// ProducerID and a sequence never reused (sequences start at the wall clock in microseconds,
// so a producer restarted with the same id does not reuse one either). When a stream breaks,
// the unacknowledged batches are sent again, in order, with the same id and sequence, on a
// new stream (backoff BackoffInitial..BackoffMax, MaxAttempts sends per batch); a batch trackd
// had stored before the break is acknowledged as a duplicate and not stored again
// (Stats().Duplicates). Safe for concurrent use.
type Producer struct {
	stub trackdv1.TrackingServiceClient
	cfg  ProducerConfig

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change of the state below
	buffer   []queued
	unacked  map[uint64]*batch
	nextSeq  uint64
	stats    ProducerStats
	flushing bool
	closing  bool
	lastErr  error

	abort     chan struct{}
	abortOnce sync.Once
	done      chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
}

type queued struct {
	at    time.Time
	event *trackdv1.TrackRequest
}

type batch struct {
	req      *trackdv1.TrackStreamRequest
	attempts int
}

type ackResult struct {
	resp *trackdv1.TrackStreamResponse
	err  error
}

// NewProducer starts a Producer on the client's connection. Close it to flush.
func (c *Client) NewProducer(cfg ProducerConfig) *Producer {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.MaxBuffered < cfg.BatchSize {
		cfg.MaxBuffered = max(100_000, cfg.BatchSize)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = 100 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffInitial {
		cfg.BackoffMax = max(5*time.Second, cfg.BackoffInitial)
	}
	if cfg.ProducerID == "" {
		cfg.ProducerID = newUUID()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Producer{
		stub: c.stub, cfg: cfg,
		changed: make(chan struct{}), unacked: map[uint64]*batch{},
		nextSeq: uint64(time.Now().UnixMicro()),
		abort:   make(chan struct{}), done: make(chan struct{}), ctx: ctx, cancel: cancel,
	}
	go p.run()
	return p
}

// newUUID is a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ProducerID is the id every batch of this producer carries.
func (p *Producer) ProducerID() string { return p.cfg.ProducerID }

// broadcast wakes everyone waiting on a change; call with mu held.
func (p *Producer) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Producer) pendingLocked() int64 {
	n := int64(len(p.buffer))
	for _, b := range p.unacked {
		n += int64(len(b.req.Events))
	}
	return n
}

// Stats returns the counters now.
func (p *Producer) Stats() ProducerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Pending = p.pendingLocked()
	return s
}

// Send buffers one event. It blocks while MaxBuffered events are waiting, until ctx ends.
// Attribute and tag conversion errors are returned at once (a *ValueError).
func (p *Producer) Send(ctx context.Context, eventKey, userID string, attributes, tags map[string]any) error {
	event, err := trackRequest(eventKey, userID, attributes, tags)
	if err != nil {
		return err
	}
	p.mu.Lock()
	for len(p.buffer) >= p.cfg.MaxBuffered && !p.closing {
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if p.closing {
		return errors.New("trackd producer: closed")
	}
	p.buffer = append(p.buffer, queued{time.Now(), event})
	p.stats.Enqueued++
	if len(p.buffer) == 1 || len(p.buffer) >= p.cfg.BatchSize {
		p.broadcast()
	}
	return nil
}

// Flush sends what is buffered now and waits until every event sent so far is acknowledged
// (or given up), or ctx ends.
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	p.flushing = true
	p.broadcast()
	for p.pendingLocked() > 0 {
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return fmt.Errorf("trackd producer: stopped with %d events pending", p.Stats().Pending)
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// Close flushes, waits for every acknowledgement and stops. When ctx ends first, the
// unacknowledged events are abandoned (Stats().Pending) and an error says how many.
func (p *Producer) Close(ctx context.Context) (ProducerStats, error) {
	p.mu.Lock()
	p.closing = true
	p.broadcast()
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop()
		<-p.done
	}
	p.cancel()
	stats := p.Stats()
	if stats.Pending > 0 {
		p.mu.Lock()
		last := p.lastErr
		p.mu.Unlock()
		return stats, fmt.Errorf("trackd producer: closed with %d events unacknowledged (last error: %v)", stats.Pending, last)
	}
	return stats, nil
}

func (p *Producer) stop() {
	p.abortOnce.Do(func() {
		close(p.abort)
		p.cancel()
	})
}

func (p *Producer) aborted() bool {
	select {
	case <-p.abort:
		return true
	default:
		return false
	}
}

func (p *Producer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.abort:
		return false
	}
}

func (p *Producer) run() {
	defer close(p.done)
	delay := p.cfg.BackoffInitial
	for {
		p.mu.Lock()
		for len(p.buffer) == 0 && len(p.unacked) == 0 && !p.closing && !p.aborted() {
			ch := p.changed
			p.mu.Unlock()
			select {
			case <-ch:
			case <-p.abort:
			}
			p.mu.Lock()
		}
		finished := p.aborted() || (p.closing && len(p.buffer) == 0 && len(p.unacked) == 0)
		p.mu.Unlock()
		if finished {
			return
		}
		err := p.session()
		if err == nil {
			delay = p.cfg.BackoffInitial
			continue
		}
		if p.aborted() {
			return
		}
		p.mu.Lock()
		p.lastErr = err
		p.stats.StreamFailures++
		p.mu.Unlock()
		p.giveUpExhausted(err)
		if !p.sleep(delay) {
			return
		}
		delay = min(delay*2, p.cfg.BackoffMax)
	}
}

// session runs one TrackStream: it resends the unacknowledged batches, then streams new ones,
// and returns nil once closing with nothing left, or the error that broke the stream.
func (p *Producer) session() error {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stream, err := p.stub.TrackStream(ctx)
	if err != nil {
		return err
	}
	acks := make(chan ackResult, p.cfg.MaxInFlight+2)
	go func() {
		for {
			resp, err := stream.Recv()
			select {
			case acks <- ackResult{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var inFlight []*batch
	// acked settles the oldest batch in flight with its acknowledgement; true when the
	// batch is to be sent again (the daemon refused it whole for now).
	acked := func(resp *trackdv1.TrackStreamResponse) (*batch, bool, error) {
		if len(inFlight) == 0 {
			return nil, false, fmt.Errorf("unexpected ack for sequence %d", resp.GetSequence())
		}
		b := inFlight[0]
		inFlight = inFlight[1:]
		if resp.GetSequence() != b.req.GetSequence() {
			return nil, false, fmt.Errorf("ack for sequence %d, expected %d", resp.GetSequence(), b.req.GetSequence())
		}
		return b, p.settle(b, resp), nil
	}
	// sendFailed: a failed Send reports io.EOF, and the stream's real status is what the
	// receiving goroutine reads next. Recv must not be called here as well: two goroutines
	// in Recv on one stream is a data race, and this one could block for good (seen as a
	// hung TestProducerResendsUnacknowledgedBatchesAfterAStreamFailure). Acknowledgements
	// that arrive before the status still settle their batches; one to be sent again stays
	// unacknowledged and goes with the next stream.
	sendFailed := func(err error) error {
		if err != io.EOF {
			return err
		}
		for {
			select {
			case r := <-acks:
				if r.err == io.EOF {
					return err
				}
				if r.err != nil {
					return r.err
				}
				if _, _, aerr := acked(r.resp); aerr != nil {
					return aerr
				}
			case <-p.abort:
				return errAborted
			}
		}
	}
	transmit := func(b *batch) error {
		p.mu.Lock()
		if b.attempts > 0 {
			p.stats.RetriedBatches++
		} else {
			p.stats.Sent += int64(len(b.req.Events))
		}
		b.attempts++
		p.mu.Unlock()
		inFlight = append(inFlight, b)
		return stream.Send(b.req)
	}

	p.mu.Lock()
	seqs := make([]uint64, 0, len(p.unacked))
	for s := range p.unacked {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	resend := make([]*batch, 0, len(seqs))
	for _, s := range seqs {
		resend = append(resend, p.unacked[s])
	}
	p.mu.Unlock()
	for _, b := range resend {
		if err := transmit(b); err != nil {
			return sendFailed(err)
		}
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var (
			wake    <-chan struct{}
			due     time.Time
			closing bool
		)
		for len(inFlight) < p.cfg.MaxInFlight {
			var b *batch
			b, wake, due, closing = p.cutReady()
			if b == nil {
				break
			}
			if err := transmit(b); err != nil {
				return sendFailed(err)
			}
		}
		if len(inFlight) == 0 && closing {
			if err := stream.CloseSend(); err != nil {
				return err
			}
			return nil
		}
		var timeout <-chan time.Time
		if !due.IsZero() {
			timer.Reset(max(time.Until(due), 0))
			timeout = timer.C
		}
		if len(inFlight) >= p.cfg.MaxInFlight {
			wake = nil // nothing can be sent until an ack arrives
			timeout = nil
		}
		select {
		case r := <-acks:
			if r.err != nil {
				if r.err == io.EOF {
					return errors.New("trackd ended the stream before acknowledging every batch")
				}
				return r.err
			}
			b, again, err := acked(r.resp)
			if err != nil {
				return err
			}
			if again {
				if !p.sleep(p.cfg.BackoffInitial) {
					return errAborted
				}
				if err := transmit(b); err != nil {
					return sendFailed(err)
				}
			}
		case <-wake:
		case <-timeout:
		case <-p.abort:
			return errAborted
		}
	}
}

// cutReady cuts a batch when BatchSize events are buffered, the oldest is due, or the
// producer is flushing or closing. Otherwise it returns a channel that is closed on the next
// change and when the oldest event falls due (zero when the buffer is empty).
func (p *Producer) cutReady() (*batch, <-chan struct{}, time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buffer) == 0 {
		return nil, p.changed, time.Time{}, p.closing
	}
	due := p.buffer[0].at.Add(p.cfg.FlushInterval)
	if len(p.buffer) < p.cfg.BatchSize && !p.closing && !p.flushing && time.Now().Before(due) {
		return nil, p.changed, due, p.closing
	}
	n := min(p.cfg.BatchSize, len(p.buffer))
	events := make([]*trackdv1.TrackRequest, n)
	for i := range n {
		events[i] = p.buffer[i].event
	}
	p.buffer = append(p.buffer[:0:0], p.buffer[n:]...)
	if len(p.buffer) == 0 {
		p.flushing = false
	}
	p.nextSeq++
	b := &batch{req: &trackdv1.TrackStreamRequest{
		Sequence: p.nextSeq, Events: events, ProducerId: p.cfg.ProducerID,
	}}
	p.unacked[p.nextSeq] = b
	p.broadcast() // room for blocked senders
	return b, p.changed, time.Time{}, p.closing
}

// settle books an acknowledgement; true when the whole batch was refused for now (e.g. the
// outbox is full) and must be sent again.
func (p *Producer) settle(b *batch, resp *trackdv1.TrackStreamResponse) bool {
	var rejections []Rejection
	retry := false
	p.mu.Lock()
	if code := codes.Code(resp.GetCode()); code != codes.OK {
		exhausted := p.cfg.MaxAttempts > 0 && b.attempts >= p.cfg.MaxAttempts
		if code == codes.InvalidArgument || exhausted {
			delete(p.unacked, b.req.GetSequence())
			p.stats.Dropped += int64(len(b.req.Events))
			rejections = append(rejections, Rejection{status.Error(code, resp.GetMessage()), b.req.Events, -1})
		} else {
			retry = true
		}
	} else {
		delete(p.unacked, b.req.GetSequence())
		p.stats.Acked += int64(resp.GetAccepted())
		p.stats.Rejected += int64(len(resp.GetErrors()))
		p.stats.Batches++
		if resp.GetDuplicate() { // the counts are the first commit's, whose ack was lost
			p.stats.Duplicates++
		}
		if resp.GetAttributionUnknown() {
			p.stats.AttributionUnknown += int64(resp.GetAccepted())
		}
		for _, e := range resp.GetErrors() {
			var events []*trackdv1.TrackRequest
			if int(e.GetIndex()) < len(b.req.Events) {
				events = b.req.Events[e.GetIndex() : e.GetIndex()+1]
			}
			rejections = append(rejections, Rejection{status.Error(codes.Code(e.GetCode()), e.GetMessage()), events, int(e.GetIndex())})
		}
	}
	p.broadcast()
	p.mu.Unlock()
	p.report(rejections)
	return retry
}

func (p *Producer) giveUpExhausted(cause error) {
	if p.cfg.MaxAttempts <= 0 {
		return
	}
	var rejections []Rejection
	p.mu.Lock()
	for seq, b := range p.unacked {
		if b.attempts >= p.cfg.MaxAttempts {
			delete(p.unacked, seq)
			p.stats.Dropped += int64(len(b.req.Events))
			rejections = append(rejections, Rejection{status.Convert(cause).Err(), b.req.Events, -1})
		}
	}
	p.broadcast()
	p.mu.Unlock()
	p.report(rejections)
}

func (p *Producer) report(rejections []Rejection) {
	if p.cfg.OnError == nil {
		return
	}
	for _, r := range rejections {
		p.cfg.OnError(r)
	}
}

package trackd

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/trackd-dev/trackd/clients/go/trackdv1"
)

// DefaultTimeout is the deadline of each call whose ctx has none, unless WithTimeout says
// otherwise.
const DefaultTimeout = 5 * time.Second

// Client is a connection to trackd. It is safe for concurrent use; make one per process.
type Client struct {
	conn    *grpc.ClientConn
	owns    bool
	stub    trackdv1.TrackingServiceClient
	timeout time.Duration
}

type options struct {
	timeout time.Duration
	creds   credentials.TransportCredentials
	dial    []grpc.DialOption
	conn    *grpc.ClientConn
}

// Option configures New.
type Option func(*options)

// WithTimeout sets the deadline of each call whose ctx has none (0: no default deadline).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithTransportCredentials uses TLS (or other) credentials instead of plaintext.
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = c }
}

// WithDialOptions adds grpc.DialOptions (interceptors, keepalive, ...) for the connection.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// WithConn uses an existing connection; Close then leaves it open.
func WithConn(conn *grpc.ClientConn) Option { return func(o *options) { o.conn = conn } }

// New connects to trackd at address ("host:port" or any gRPC target). The connection is
// made lazily, so New fails only on bad options.
func New(address string, opts ...Option) (*Client, error) {
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{conn: o.conn, timeout: o.timeout}
	if c.conn == nil {
		creds := o.creds
		if creds == nil {
			creds = insecure.NewCredentials()
		}
		dial := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, o.dial...)
		conn, err := grpc.NewClient(address, dial...)
		if err != nil {
			return nil, err
		}
		c.conn, c.owns = conn, true
	}
	c.stub = trackdv1.NewTrackingServiceClient(c.conn)
	return c, nil
}

// Close closes the connection (unless it came from WithConn).
func (c *Client) Close() error {
	if c.owns {
		return c.conn.Close()
	}
	return nil
}

// Stub is the generated client, for RPCs or fields this package does not wrap.
func (c *Client) Stub() trackdv1.TrackingServiceClient { return c.stub }

func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// Activate decides the user's variation of an experiment, records an impression and
// remembers the activation for attributing later conversions. It returns the variation key,
// or "" (and a nil error) when the user is in no variation: the experiment is not running,
// the audience does not match or the user is outside the traffic allocation.
func (c *Client) Activate(ctx context.Context, experimentKey, userID string, attributes map[string]any) (string, error) {
	resp, err := c.ActivateDetail(ctx, experimentKey, userID, attributes)
	if err != nil {
		return "", err
	}
	return resp.GetVariationKey(), nil
}

// ActivateDetail is Activate with trackd's whole answer (ids, reason, impression_recorded).
// GetAttributionDegraded() is true when a store the call needed could not be used: the
// override store (Redis) unreachable, so the user's forced variation was ignored; or the
// activation store unreachable (Redis) or full (local LMDB), so the activation is not
// remembered for attribution and the impression may repeat one already sent.
func (c *Client) ActivateDetail(ctx context.Context, experimentKey, userID string, attributes map[string]any) (*trackdv1.ActivateResponse, error) {
	attrs, err := ToValueMap("attributes", attributes)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	return c.stub.Activate(ctx, &trackdv1.ActivateRequest{
		ExperimentKey: experimentKey, UserId: userID, Attributes: attrs,
	})
}

// GetVariation makes Activate's decision without recording an impression or an activation;
// "" when the user is in no variation.
func (c *Client) GetVariation(ctx context.Context, experimentKey, userID string, attributes map[string]any) (string, error) {
	attrs, err := ToValueMap("attributes", attributes)
	if err != nil {
		return "", err
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.stub.GetVariation(ctx, &trackdv1.GetVariationRequest{
		ExperimentKey: experimentKey, UserId: userID, Attributes: attrs,
	})
	if err != nil {
		return "", err
	}
	return resp.GetVariationKey(), nil
}

// Attribution is an experiment a conversion was counted for, and the user's variation in it.
type Attribution struct {
	ExperimentKey string
	VariationKey  string
	ExperimentID  string
	VariationID   string
}

// Track records a conversion event and returns the experiments it was attributed to (those
// the user was activated in within trackd's TTL; possibly none). An event key that is not in
// the datafile gives a NotFound status error. No attributions may also mean trackd could
// not reach its Redis: TrackDetail tells the two apart.
func (c *Client) Track(ctx context.Context, eventKey, userID string, attributes, tags map[string]any) ([]Attribution, error) {
	resp, err := c.TrackDetail(ctx, eventKey, userID, attributes, tags)
	if err != nil {
		return nil, err
	}
	out := make([]Attribution, 0, len(resp.GetAttributions()))
	for _, a := range resp.GetAttributions() {
		out = append(out, Attribution{
			ExperimentKey: a.GetExperimentKey(), VariationKey: a.GetVariationKey(),
			ExperimentID: a.GetExperimentId(), VariationID: a.GetVariationId(),
		})
	}
	return out, nil
}

// TrackDetail is Track with trackd's whole answer (attributions, uuid). Its
// GetAttributionUnknown() is true when trackd could not read its activation store (Redis):
// the conversion was recorded, but without attributions.
func (c *Client) TrackDetail(ctx context.Context, eventKey, userID string, attributes, tags map[string]any) (*trackdv1.TrackResponse, error) {
	req, err := trackRequest(eventKey, userID, attributes, tags)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	return c.stub.Track(ctx, req)
}

func trackRequest(eventKey, userID string, attributes, tags map[string]any) (*trackdv1.TrackRequest, error) {
	attrs, err := ToValueMap("attributes", attributes)
	if err != nil {
		return nil, err
	}
	tagValues, err := ToValueMap("tags", tags)
	if err != nil {
		return nil, err
	}
	return &trackdv1.TrackRequest{EventKey: eventKey, UserId: userID, Attributes: attrs, Tags: tagValues}, nil
}

// SetForcedVariation forces the user into a variation; "" clears the forcing.
func (c *Client) SetForcedVariation(ctx context.Context, experimentKey, userID, variationKey string) error {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	_, err := c.stub.SetForcedVariation(ctx, &trackdv1.SetForcedVariationRequest{
		ExperimentKey: experimentKey, UserId: userID, VariationKey: variationKey,
	})
	return err
}

// GetForcedVariation returns the variation the user is forced into, or "".
func (c *Client) GetForcedVariation(ctx context.Context, experimentKey, userID string) (string, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.stub.GetForcedVariation(ctx, &trackdv1.GetForcedVariationRequest{
		ExperimentKey: experimentKey, UserId: userID,
	})
	return resp.GetVariationKey(), err
}

// GetConfig describes the live datafile.
func (c *Client) GetConfig(ctx context.Context) (*trackdv1.GetConfigResponse, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	return c.stub.GetConfig(ctx, &trackdv1.GetConfigRequest{})
}

// GetExperimentResults returns trackd's local counts for one experiment.
func (c *Client) GetExperimentResults(ctx context.Context, experimentKey string) (*trackdv1.GetExperimentResultsResponse, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	return c.stub.GetExperimentResults(ctx, &trackdv1.GetExperimentResultsRequest{ExperimentKey: experimentKey})
}

var errAborted = errors.New("trackd producer: aborted")

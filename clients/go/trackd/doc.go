// Package trackd is the Go client of trackd, the gRPC experiment-tracking daemon: Activate
// and Track with the Optimizely SDKs' call shapes, plain maps for attributes and tags, and a
// batching Producer on TrackStream.
//
//	client, err := trackd.New("127.0.0.1:50051")
//	if err != nil { ... }
//	defer client.Close()
//
//	variation, err := client.Activate(ctx, "my_experiment", "user123",
//		map[string]any{"device": "iPhone"})
//	// variation == "" when the user is in no variation of the experiment.
//
//	attributions, err := client.Track(ctx, "my_conversion", "user123",
//		map[string]any{"device": "iPhone"}, map[string]any{"revenue": 4200})
//	if status.Code(err) == codes.NotFound { ... } // or trackd.IsNotFound(err)
//
// Errors from trackd are gRPC status errors: inspect them with status.Code(err) or the
// IsNotFound / IsInvalidArgument / ... helpers. Deadlines come from ctx; when ctx has none,
// the client's default timeout (WithTimeout, 5s unless set) applies to each call.
//
// The generated messages and stub are in package
// github.com/trackd-dev/trackd/clients/go/trackdv1, reachable through Client.Stub.
package trackd

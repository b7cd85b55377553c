package trackd

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The client returns trackd's errors as gRPC status errors, unchanged: status.Code(err)
// gives the code. These helpers name the codes trackd uses.

// IsNotFound: the experiment, event or variation is not in the live datafile.
func IsNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// IsInvalidArgument: an empty key, a value of the wrong type, a batch over the limit.
func IsInvalidArgument(err error) bool { return status.Code(err) == codes.InvalidArgument }

// IsResourceExhausted: trackd's outbox is full or a request limit was reached; retry later.
func IsResourceExhausted(err error) bool { return status.Code(err) == codes.ResourceExhausted }

// IsFailedPrecondition: trackd's state forbids the call (not a missing datafile: that is
// Unavailable).
func IsFailedPrecondition(err error) bool { return status.Code(err) == codes.FailedPrecondition }

// IsUnavailable: trackd cannot be reached, is shutting down, or has no datafile loaded yet;
// safe to retry.
func IsUnavailable(err error) bool { return status.Code(err) == codes.Unavailable }

// IsDeadlineExceeded: the call's deadline passed before trackd answered.
func IsDeadlineExceeded(err error) bool { return status.Code(err) == codes.DeadlineExceeded }

package trackd

import (
	"errors"
	"fmt"
	"math"
	"reflect"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// ErrUnsupportedValue is wrapped by a ValueError for a value that is not a string, number,
// bool or nil: trackd accepts only those for attributes and tags (no slices, maps or structs).
var ErrUnsupportedValue = errors.New("unsupported attribute or tag value")

// ErrInexactInteger is wrapped by a ValueError for an integer that a protobuf number (a
// double) cannot hold exactly: beyond ±2^53.
var ErrInexactInteger = errors.New("integer not exactly representable as a double")

const exactIntLimit = 1 << 53

// ValueError says which attribute or tag could not be converted. It is also a gRPC status
// error with code InvalidArgument (status.Code(err) == codes.InvalidArgument), the code trackd
// itself gives such values, and it wraps ErrUnsupportedValue or ErrInexactInteger.
type ValueError struct {
	Field string // "attributes" or "tags"
	Key   string
	Value any
	Err   error
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("%s[%q]: %v: %T(%v)", e.Field, e.Key, e.Err, e.Value, e.Value)
}

func (e *ValueError) Unwrap() error { return e.Err }

// GRPCStatus makes status.Code and status.FromError see an InvalidArgument status.
func (e *ValueError) GRPCStatus() *status.Status {
	return status.New(codes.InvalidArgument, e.Error())
}

// ToValue converts a string, bool, nil, any integer or float type (or a type defined on one
// of those) into a google.protobuf.Value. A *structpb.Value is passed through as is.
func ToValue(v any) (*structpb.Value, error) {
	switch x := v.(type) {
	case nil:
		return structpb.NewNullValue(), nil
	case *structpb.Value:
		if x == nil {
			return structpb.NewNullValue(), nil
		}
		return x, nil
	case string:
		return structpb.NewStringValue(x), nil
	case bool:
		return structpb.NewBoolValue(x), nil
	case int:
		return intValue(int64(x))
	case int64:
		return intValue(x)
	case int32:
		return intValue(int64(x))
	case float64:
		return structpb.NewNumberValue(x), nil
	case float32:
		return structpb.NewNumberValue(float64(x)), nil
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.String:
		return structpb.NewStringValue(r.String()), nil
	case reflect.Bool:
		return structpb.NewBoolValue(r.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intValue(r.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := r.Uint()
		if u > exactIntLimit {
			return nil, ErrInexactInteger
		}
		return structpb.NewNumberValue(float64(u)), nil
	case reflect.Float32, reflect.Float64:
		return structpb.NewNumberValue(r.Float()), nil
	case reflect.Pointer:
		if r.IsNil() {
			return structpb.NewNullValue(), nil
		}
	}
	return nil, ErrUnsupportedValue
}

func intValue(i int64) (*structpb.Value, error) {
	if i > exactIntLimit || i < -exactIntLimit {
		return nil, ErrInexactInteger
	}
	return structpb.NewNumberValue(float64(i)), nil
}

// ToValueMap converts attributes or tags; a nil or empty map gives nil. field ("attributes",
// "tags") names the map in a *ValueError.
func ToValueMap(field string, m map[string]any) (map[string]*structpb.Value, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]*structpb.Value, len(m))
	for k, v := range m {
		pv, err := ToValue(v)
		if err != nil {
			return nil, &ValueError{Field: field, Key: k, Value: v, Err: err}
		}
		out[k] = pv
	}
	return out, nil
}

// FromValue is the inverse of ToValue: string, bool, nil, int64 for whole numbers within
// ±2^53, float64 otherwise. Lists and structs give ErrUnsupportedValue.
func FromValue(v *structpb.Value) (any, error) {
	switch k := v.GetKind().(type) {
	case nil, *structpb.Value_NullValue:
		return nil, nil
	case *structpb.Value_StringValue:
		return k.StringValue, nil
	case *structpb.Value_BoolValue:
		return k.BoolValue, nil
	case *structpb.Value_NumberValue:
		n := k.NumberValue
		if n == math.Trunc(n) && math.Abs(n) <= exactIntLimit {
			return int64(n), nil
		}
		return n, nil
	}
	return nil, ErrUnsupportedValue
}

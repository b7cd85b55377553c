package trackd

import (
	"errors"
	"math"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

type device string

func TestToValueConvertsScalarsToTheMatchingKind(t *testing.T) {
	cases := []struct {
		name string
		in   any
		want *structpb.Value
	}{
		{"string", "iPhone", structpb.NewStringValue("iPhone")},
		{"named string", device("iPhone"), structpb.NewStringValue("iPhone")},
		{"int", 31, structpb.NewNumberValue(31)},
		{"negative int64", int64(-7), structpb.NewNumberValue(-7)},
		{"int8", int8(5), structpb.NewNumberValue(5)},
		{"uint", uint(4200), structpb.NewNumberValue(4200)},
		{"2^53", int64(1 << 53), structpb.NewNumberValue(1 << 53)},
		{"float64", 0.25, structpb.NewNumberValue(0.25)},
		{"float32", float32(1.5), structpb.NewNumberValue(1.5)},
		{"true", true, structpb.NewBoolValue(true)},
		{"false", false, structpb.NewBoolValue(false)},
		{"nil", nil, structpb.NewNullValue()},
		{"nil pointer", (*string)(nil), structpb.NewNullValue()},
		{"a Value passes through", structpb.NewStringValue("x"), structpb.NewStringValue("x")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ToValue(c.in)
			if err != nil {
				t.Fatalf("ToValue(%v): %v", c.in, err)
			}
			if !proto.Equal(got, c.want) {
				t.Fatalf("ToValue(%v) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}

func TestNonFiniteFloatsPassThroughForTrackdToJudge(t *testing.T) {
	got, err := ToValue(math.Inf(1))
	if err != nil || !math.IsInf(got.GetNumberValue(), 1) {
		t.Fatalf("ToValue(+Inf) = %v, %v", got, err)
	}
}

func TestListsMapsAndStructsAreRefused(t *testing.T) {
	for _, bad := range []any{[]string{"a"}, map[string]any{"a": 1}, struct{}{}, []byte("x"), complex(1, 2)} {
		if _, err := ToValue(bad); !errors.Is(err, ErrUnsupportedValue) {
			t.Errorf("ToValue(%#v) err = %v, want ErrUnsupportedValue", bad, err)
		}
	}
}

func TestIntegersBeyondDoublePrecisionAreRefused(t *testing.T) {
	for _, bad := range []any{int64(1<<53 + 1), int64(-(1 << 53) - 1), uint64(math.MaxUint64)} {
		if _, err := ToValue(bad); !errors.Is(err, ErrInexactInteger) {
			t.Errorf("ToValue(%v) err = %v, want ErrInexactInteger", bad, err)
		}
	}
}

func TestMapErrorNamesTheKeyAndIsAnInvalidArgumentStatus(t *testing.T) {
	_, err := ToValueMap("tags", map[string]any{"revenue": 4200, "items": []string{"a"}})
	var verr *ValueError
	if !errors.As(err, &verr) || verr.Field != "tags" || verr.Key != "items" {
		t.Fatalf("err = %v, want a ValueError for tags[items]", err)
	}
	if !errors.Is(err, ErrUnsupportedValue) {
		t.Fatalf("err = %v does not wrap ErrUnsupportedValue", err)
	}
	if status.Code(err) != codes.InvalidArgument || !IsInvalidArgument(err) {
		t.Fatalf("status.Code(err) = %v, want InvalidArgument", status.Code(err))
	}
}

func TestTheDocSnippetAttributesConvert(t *testing.T) {
	got, err := ToValueMap("attributes", map[string]any{"device": "iPhone", "ad_source": "my_campaign"})
	if err != nil {
		t.Fatal(err)
	}
	if got["device"].GetStringValue() != "iPhone" || got["ad_source"].GetStringValue() != "my_campaign" || len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	if m, err := ToValueMap("attributes", nil); m != nil || err != nil {
		t.Fatalf("nil map: %v, %v", m, err)
	}
}

func TestFromValueInvertsToValue(t *testing.T) {
	for _, in := range []any{"x", int64(3), 2.5, true, nil} {
		v, err := ToValue(in)
		if err != nil {
			t.Fatal(err)
		}
		back, err := FromValue(v)
		if err != nil || back != in {
			t.Errorf("FromValue(ToValue(%#v)) = %#v, %v", in, back, err)
		}
	}
	if _, err := FromValue(structpb.NewListValue(&structpb.ListValue{})); !errors.Is(err, ErrUnsupportedValue) {
		t.Errorf("a list: err = %v", err)
	}
}

func TestStatusHelpersReadTheCode(t *testing.T) {
	err := status.Error(codes.NotFound, "unknown event")
	if !IsNotFound(err) || IsInvalidArgument(err) || IsUnavailable(nil) {
		t.Fatal("helpers disagree with status.Code")
	}
}

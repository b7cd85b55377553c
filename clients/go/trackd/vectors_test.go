package trackd

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

// valueVectors is clients/testdata/values.json, shared by every client's values tests.
type valueVectors struct {
	NonFinite map[string]string `json:"non_finite"`
	Values    []valueVector     `json:"values"`
	Native    []valueVector     `json:"native"`
}

type valueVector struct {
	Name   string          `json:"name"`
	Input  json.RawMessage `json:"input"`
	Expect *struct {
		Kind  string `json:"kind"`
		Value any    `json:"value"`
	} `json:"expect"`
	Error string `json:"error"`
}

var nativeInputs = map[string]any{
	"nan": math.NaN(), "inf": math.Inf(1), "-inf": math.Inf(-1), "2^53+1": int64(1<<53 + 1),
}

var vectorErrors = map[string]error{"unsupported": ErrUnsupportedValue, "inexact": ErrInexactInteger}

func loadVectors(t *testing.T) valueVectors {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "values.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v valueVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// goValue decodes a JSON input into Go's natural type: int64 for a whole number, float64 for
// a fraction, and []any / map[string]any for a list / an object.
func goValue(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return i
		}
		f, _ := n.Float64()
		return f
	}
	return v
}

func expectedNumber(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case string:
		switch x {
		case "NaN":
			return math.NaN()
		case "Infinity":
			return math.Inf(1)
		case "-Infinity":
			return math.Inf(-1)
		}
	}
	panic("bad number in values.json")
}

func TestSharedValueVectors(t *testing.T) {
	vectors := loadVectors(t)
	if vectors.NonFinite["attributes"] != "pass_through" || vectors.NonFinite["tags"] != "pass_through" {
		t.Fatalf("values.json non_finite = %v: this client passes NaN and infinities through", vectors.NonFinite)
	}
	cases := map[string]any{}
	all := append(append([]valueVector{}, vectors.Values...), vectors.Native...)
	for _, v := range vectors.Values {
		cases[v.Name] = goValue(t, v.Input)
	}
	for _, v := range vectors.Native {
		in, ok := nativeInputs[v.Name]
		if !ok {
			t.Fatalf("native vector %q is not constructed here", v.Name)
		}
		cases[v.Name] = in
	}
	for _, field := range []string{"attributes", "tags"} {
		for _, v := range all {
			t.Run(field+"/"+v.Name, func(t *testing.T) {
				got, err := ToValueMap(field, map[string]any{"k": cases[v.Name]})
				if v.Error != "" {
					if !errors.Is(err, vectorErrors[v.Error]) || !IsInvalidArgument(err) {
						t.Fatalf("err = %v, want %s as InvalidArgument", err, v.Error)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				value := got["k"]
				switch v.Expect.Kind {
				case "string_value":
					if _, ok := value.GetKind().(*structpb.Value_StringValue); !ok || value.GetStringValue() != v.Expect.Value {
						t.Fatalf("got %v, want string %v", value, v.Expect.Value)
					}
				case "bool_value":
					if _, ok := value.GetKind().(*structpb.Value_BoolValue); !ok || value.GetBoolValue() != v.Expect.Value {
						t.Fatalf("got %v, want bool %v", value, v.Expect.Value)
					}
				case "null_value":
					if _, ok := value.GetKind().(*structpb.Value_NullValue); !ok {
						t.Fatalf("got %v, want null", value)
					}
				case "number_value":
					want := expectedNumber(v.Expect.Value)
					n, ok := value.GetKind().(*structpb.Value_NumberValue)
					if !ok || !(n.NumberValue == want || math.IsNaN(want) && math.IsNaN(n.NumberValue)) {
						t.Fatalf("got %v, want number %v", value, want)
					}
				default:
					t.Fatalf("unknown kind %q in values.json", v.Expect.Kind)
				}
			})
		}
	}
}

// clients/testdata/values.json: the value conversions every client makes, read by every
// client's tests. Bundled by build.sh into dist/test/ and run with node --test.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { NullValue } from "@bufbuild/protobuf/wkt";
import { TrackRequestSchema } from "../src/generated/trackd/v1/tracking_service_pb.js";
import { toValueMap } from "../src/values.js";

interface Vector {
  name: string;
  input?: unknown;
  expect?: { kind: "string_value" | "number_value" | "bool_value" | "null_value"; value: unknown };
  error?: "unsupported" | "inexact";
}

// Bundled into dist/test/, so the repository's clients/ is three levels up.
const vectors = JSON.parse(readFileSync(new URL("../../../testdata/values.json", import.meta.url), "utf8")) as {
  non_finite: Record<string, string>;
  values: Vector[];
  native: Vector[];
};

const native: Record<string, unknown> = { nan: NaN, inf: Infinity, "-inf": -Infinity, "2^53+1": 2n ** 53n + 1n };
const errors = { unsupported: TypeError, inexact: RangeError };
const cases: Record<string, string> = {
  string_value: "stringValue",
  number_value: "numberValue",
  bool_value: "boolValue",
  null_value: "nullValue",
};

function expected(vector: Vector): { case: string; value: unknown } {
  const { kind, value } = vector.expect!;
  if (kind === "null_value") return { case: "nullValue", value: NullValue.NULL_VALUE };
  if (kind === "number_value") return { case: "numberValue", value: Number(value) }; // Number("NaN")
  return { case: cases[kind]!, value };
}

test("the vectors name one non-finite rule for all clients: pass through", () => {
  assert.equal(vectors.non_finite.attributes, "pass_through");
  assert.equal(vectors.non_finite.tags, "pass_through");
});

const all: [Vector, unknown][] = [
  ...vectors.values.map((v): [Vector, unknown] => [v, v.input]),
  ...vectors.native.map((v): [Vector, unknown] => {
    assert.ok(v.name in native, `native vector ${v.name} is not constructed here`);
    return [v, native[v.name]];
  }),
];

for (const [vector, input] of all) {
  test(`values.json: ${vector.name}`, () => {
    if (vector.error) {
      assert.throws(() => toValueMap({ k: input as never }), errors[vector.error]);
      return;
    }
    // As sent: through the binary format the client uses by default (NaN and Infinity too).
    const request = { eventKey: "e", userId: "u", attributes: toValueMap({ k: input as never }), tags: {} };
    const sent = fromBinary(TrackRequestSchema, toBinary(TrackRequestSchema, create(TrackRequestSchema, request)));
    const kind = sent.attributes["k"]!.kind;
    assert.deepEqual({ case: kind.case, value: kind.value }, expected(vector)); // Object.is: NaN equals NaN
  });
}

test("keys whose value is undefined are left out, as JSON leaves them", () => {
  assert.deepEqual(Object.keys(toValueMap({ a: "x", b: undefined })), ["a"]);
});

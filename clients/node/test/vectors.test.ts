// clients/testdata/values.json: the value conversions every client makes, read by every
// client's tests.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { toValueMap } from '../src/values';

interface Vector {
  name: string;
  input?: unknown;
  expect?: { kind: 'string_value' | 'number_value' | 'bool_value' | 'null_value'; value: unknown };
  error?: 'unsupported' | 'inexact';
}

// Compiled into dist/test/, so the repository's clients/ is three levels up.
const vectors = JSON.parse(
  readFileSync(path.join(__dirname, '..', '..', '..', 'testdata', 'values.json'), 'utf8'),
) as { non_finite: Record<string, string>; values: Vector[]; native: Vector[] };

const native: Record<string, unknown> = {
  nan: NaN,
  inf: Infinity,
  '-inf': -Infinity,
  '2^53+1': 2n ** 53n + 1n,
};
const errors = { unsupported: TypeError, inexact: RangeError };
const fields: Record<string, string> = {
  string_value: 'stringValue',
  number_value: 'numberValue',
  bool_value: 'boolValue',
  null_value: 'nullValue',
};

function expected(vector: Vector): Record<string, unknown> {
  const { kind, value } = vector.expect!;
  if (kind === 'null_value') return { nullValue: 'NULL_VALUE' };
  if (kind === 'number_value') return { numberValue: Number(value) }; // Number('NaN'), Number('Infinity')
  return { [fields[kind]]: value };
}

test('the vectors name one non-finite rule for all clients: pass through', () => {
  assert.deepEqual(vectors.non_finite.attributes, 'pass_through');
  assert.deepEqual(vectors.non_finite.tags, 'pass_through');
});

const cases: [Vector, unknown][] = [
  ...vectors.values.map((v): [Vector, unknown] => [v, v.input]),
  ...vectors.native.map((v): [Vector, unknown] => {
    assert.ok(v.name in native, `native vector ${v.name} is not constructed here`);
    return [v, native[v.name]];
  }),
];

for (const [vector, input] of cases) {
  test(`values.json: ${vector.name}`, () => {
    // Attributes and tags go through this one conversion (client.ts).
    if (vector.error) {
      assert.throws(() => toValueMap({ k: input as never }), errors[vector.error]);
    } else {
      // deepEqual compares with Object.is, so NaN equals NaN.
      assert.deepEqual(toValueMap({ k: input as never }).k, expected(vector));
    }
  });
}

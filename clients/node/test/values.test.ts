import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { fromValue, toValue, toValueMap } from '../src/values';

test('strings, booleans and null become their Value kinds', () => {
  assert.deepEqual(toValue('iPhone'), { stringValue: 'iPhone' });
  assert.deepEqual(toValue(false), { boolValue: false });
  assert.deepEqual(toValue(null), { nullValue: 'NULL_VALUE' });
});

test('numbers become number values, integers and fractions alike', () => {
  assert.deepEqual(toValue(4200), { numberValue: 4200 });
  assert.deepEqual(toValue(-0.25), { numberValue: -0.25 });
});

test('a bigint a double holds exactly becomes a number', () => {
  assert.deepEqual(toValue(31n), { numberValue: 31 });
  assert.deepEqual(toValue(2n ** 53n), { numberValue: 2 ** 53 });
});

test('a bigint a double cannot hold is a RangeError', () => {
  assert.throws(() => toValue(2n ** 53n + 1n), RangeError);
});

test('NaN and Infinity pass through for trackd to judge', () => {
  assert.ok(Number.isNaN(toValue(NaN).numberValue));
  assert.equal(toValue(Infinity).numberValue, Infinity);
  assert.equal(toValue(-Infinity).numberValue, -Infinity);
});

test('objects, arrays, undefined, symbols and functions are TypeErrors', () => {
  for (const bad of [{}, ['a'], undefined, Symbol('s'), () => 1, new Date(0)]) {
    assert.throws(() => toValue(bad), TypeError, String(typeof bad));
  }
});

test('a map converts every entry and leaves undefined out', () => {
  assert.deepEqual(toValueMap({ device: 'iPhone', age: 31, beta: true, plan: null, gone: undefined }), {
    device: { stringValue: 'iPhone' },
    age: { numberValue: 31 },
    beta: { boolValue: true },
    plan: { nullValue: 'NULL_VALUE' },
  });
});

test('null or undefined attributes are an empty map', () => {
  assert.deepEqual(toValueMap(null), {});
  assert.deepEqual(toValueMap(undefined), {});
});

test('a bad value names its key', () => {
  assert.throws(
    () => toValueMap({ revenue: [1] as unknown as number }),
    (error: unknown) => error instanceof TypeError && error.message.includes('"revenue"'),
  );
});

test('arrays and Maps are not attribute maps', () => {
  assert.throws(() => toValueMap([] as never), TypeError);
  assert.throws(() => toValueMap(new Map() as never), TypeError);
});

test('fromValue inverts toValue', () => {
  for (const plain of ['x', 1.5, true, null]) {
    assert.equal(fromValue({ ...toValue(plain), kind: Object.keys(toValue(plain))[0] as never }), plain);
  }
});

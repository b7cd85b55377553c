// Plain JavaScript values <-> google.protobuf.Value, the type of trackd's attributes and tags.
import type { Value } from './generated/google/protobuf/Value';

/** What an attribute or tag may be. */
export type AttributeValue = string | number | boolean | null;

/** Attributes or tags: a plain object. Keys whose value is undefined are left out, as JSON does. */
export type Attributes = Readonly<Record<string, AttributeValue | undefined>>;

/**
 * Converts one value. Strings, numbers, booleans and null are accepted; a bigint is accepted
 * while a double holds it exactly (else a RangeError). Anything else (objects, arrays,
 * undefined, symbols, functions) is a TypeError: a silently stringified object or a rounded
 * revenue would be counted wrongly, far from the call that caused it. NaN and Infinity pass
 * through as every client does (clients/testdata/values.json): trackd accepts them as
 * attributes and answers INVALID_ARGUMENT for them as tags.
 */
export function toValue(value: unknown): Value {
  if (value === null) {
    return { nullValue: 'NULL_VALUE' };
  }
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'number':
      return { numberValue: value };
    case 'bigint': {
      const limit = 2n ** 53n;
      if (value > limit || value < -limit) {
        throw new RangeError(`${value} cannot be sent exactly as a double`);
      }
      return { numberValue: Number(value) };
    }
    default:
      throw new TypeError(
        `unsupported value ${describe(value)}: attributes and tags are strings, numbers, booleans or null`,
      );
  }
}

/** Converts a plain object of values; null or undefined is an empty map. */
export function toValueMap(values: Attributes | null | undefined): Record<string, Value> {
  const converted: Record<string, Value> = {};
  if (values === null || values === undefined) {
    return converted;
  }
  if (typeof values !== 'object' || Array.isArray(values) || values instanceof Map) {
    throw new TypeError(`attributes and tags are a plain object, not ${describe(values)}`);
  }
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) {
      continue;
    }
    try {
      converted[key] = toValue(value);
    } catch (error) {
      if (error instanceof Error) {
        error.message = `key "${key}": ${error.message}`;
      }
      throw error;
    }
  }
  return converted;
}

/** Converts a Value back to a plain value (for values trackd sends). */
export function fromValue(value: Value): unknown {
  switch (value.kind) {
    case 'nullValue':
      return null;
    case 'stringValue':
      return value.stringValue;
    case 'numberValue':
      return Number(value.numberValue);
    case 'boolValue':
      return value.boolValue;
    case 'structValue':
      return Object.fromEntries(
        Object.entries(value.structValue?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]),
      );
    case 'listValue':
      return (value.listValue?.values ?? []).map(fromValue);
    default:
      return undefined;
  }
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Map) return 'a Map';
  if (value === undefined) return 'undefined';
  return `of type ${typeof value}`;
}

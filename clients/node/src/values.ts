// Plain JavaScript values <-> google.protobuf.Value, the type of trackd's attributes and tags.
import { checkedMap, checkedValue, type Attributes, type CheckedValue } from './attributes';
import type { Value } from './generated/google/protobuf/Value';

export type { AttributeValue, Attributes } from './attributes';

/**
 * Converts one value, checked as `checkedValue` checks it (./attributes): a TypeError or a
 * RangeError for anything trackd would not take.
 */
export function toValue(value: unknown): Value {
  return wrapped(checkedValue(value));
}

/** Converts a plain object of values; null or undefined is an empty map. */
export function toValueMap(values: Attributes | null | undefined): Record<string, Value> {
  return checkedMap(values, wrapped);
}

function wrapped(value: CheckedValue): Value {
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'number':
      return { numberValue: value };
    default:
      return { nullValue: 'NULL_VALUE' };
  }
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

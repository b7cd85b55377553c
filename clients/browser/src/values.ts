// Plain JavaScript values -> google.protobuf.Value, the type of trackd's attributes and tags,
// converted as every client converts them (clients/testdata/values.json).
import { create } from "@bufbuild/protobuf";
import { NullValue, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";

/** What an attribute or tag may be. */
export type AttributeValue = string | number | boolean | null;

/** Attributes or tags: a plain object. Keys whose value is undefined are left out, as JSON does. */
export type Attributes = Readonly<Record<string, AttributeValue | undefined>>;

const EXACT_LIMIT = 2n ** 53n; // beyond it a double would silently change the integer

/**
 * Converts one value. Strings, numbers, booleans and null are accepted; a bigint while a double
 * holds it exactly (else a RangeError). Anything else is a TypeError before any call: a silently
 * stringified object would be counted wrongly, far from the call that caused it. NaN and
 * Infinity pass through: trackd judges them (accepted as attributes, INVALID_ARGUMENT as tags).
 */
export function toValue(value: unknown): Value {
  if (value === null) {
    return create(ValueSchema, { kind: { case: "nullValue", value: NullValue.NULL_VALUE } });
  }
  switch (typeof value) {
    case "string":
      return create(ValueSchema, { kind: { case: "stringValue", value } });
    case "boolean":
      return create(ValueSchema, { kind: { case: "boolValue", value } });
    case "number":
      return create(ValueSchema, { kind: { case: "numberValue", value } });
    case "bigint":
      if (value > EXACT_LIMIT || value < -EXACT_LIMIT) {
        throw new RangeError(`${value} cannot be sent exactly as a double`);
      }
      return create(ValueSchema, { kind: { case: "numberValue", value: Number(value) } });
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
  if (typeof values !== "object" || Array.isArray(values) || values instanceof Map) {
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

function describe(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value instanceof Map) return "a Map";
  if (value === undefined) return "undefined";
  return `of type ${typeof value}`;
}

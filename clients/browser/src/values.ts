// Plain JavaScript values -> google.protobuf.Value, the type of trackd's attributes and tags:
// checked by the Node client's own code (clients/node/src/attributes.ts), as every client
// checks them (clients/testdata/values.json), then wrapped in connect-es's Value.
import { create } from "@bufbuild/protobuf";
import { NullValue, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { checkedMap, checkedValue, type Attributes, type CheckedValue } from "../../node/src/attributes";

export type { AttributeValue, Attributes } from "../../node/src/attributes";

/**
 * Converts one value, checked as `checkedValue` checks it: a TypeError or a RangeError before
 * any call for anything trackd would not take.
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
    case "string":
      return create(ValueSchema, { kind: { case: "stringValue", value } });
    case "boolean":
      return create(ValueSchema, { kind: { case: "boolValue", value } });
    case "number":
      return create(ValueSchema, { kind: { case: "numberValue", value } });
    default:
      return create(ValueSchema, { kind: { case: "nullValue", value: NullValue.NULL_VALUE } });
  }
}

// What an attribute or tag may be, checked before any call as every client checks it
// (clients/testdata/values.json). No protobuf here: the Node client wraps a checked value in
// proto-loader's Value (./values), the browser client (clients/browser) in connect-es's.

/** What an attribute or tag may be. */
export type AttributeValue = string | number | boolean | null;

/** Attributes or tags: a plain object. Keys whose value is undefined are left out, as JSON does. */
export type Attributes = Readonly<Record<string, AttributeValue | undefined>>;

/** A value as sent: a bigint is already a number. */
export type CheckedValue = string | number | boolean | null;

const EXACT_LIMIT = 2n ** 53n; // beyond it a double would silently change the integer

/**
 * Checks one value. Strings, numbers, booleans and null are accepted; a bigint is accepted
 * while a double holds it exactly (else a RangeError). Anything else (objects, arrays,
 * undefined, symbols, functions) is a TypeError: a silently stringified object or a rounded
 * revenue would be counted wrongly, far from the call that caused it. NaN and Infinity pass
 * through as every client does (clients/testdata/values.json): trackd accepts them as
 * attributes and answers INVALID_ARGUMENT for them as tags.
 */
export function checkedValue(value: unknown): CheckedValue {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'number':
      return value;
    case 'bigint':
      if (value > EXACT_LIMIT || value < -EXACT_LIMIT) {
        throw new RangeError(`${value} cannot be sent exactly as a double`);
      }
      return Number(value);
    default:
      if (value === null) {
        return null;
      }
      throw new TypeError(
        `unsupported value ${describe(value)}: attributes and tags are strings, numbers, booleans or null`,
      );
  }
}

/**
 * A plain object of values, each checked and then wrapped by `wrap` (into the client's
 * protobuf Value), undefined ones left out; null or undefined is an empty map. An error names
 * its key.
 */
export function checkedMap<V>(
  values: Attributes | null | undefined,
  wrap: (value: CheckedValue) => V,
): Record<string, V> {
  const converted: Record<string, V> = {};
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
      converted[key] = wrap(checkedValue(value));
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
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Map) return 'a Map';
  if (value === undefined) return 'undefined';
  return `of type ${typeof value}`;
}

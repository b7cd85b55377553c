<?php

declare(strict_types=1);

namespace Trackd;

/**
 * Attribute and tag values to and from the JSON of google.protobuf.Value, the type of trackd's
 * attributes, tags and flag variables. Checked against clients/testdata/values.json, the
 * vectors every client shares.
 */
final class Values
{
    /** Integers beyond this are not exact as a double, the only number a Value holds. */
    public const MAX_EXACT_INTEGER = 2 ** 53;

    /**
     * A map of attributes or tags as a JSON object (an empty one stays an object, not `[]`).
     * null, bool, int (|x| <= 2^53), finite float and string values pass; anything else is an
     * \InvalidArgumentException before any call.
     *
     * @param array<array-key, mixed> $map
     */
    public static function toJsonObject(array $map): \stdClass
    {
        $object = new \stdClass();
        foreach ($map as $key => $value) {
            $object->{(string) $key} = self::toJsonValue($value);
        }
        return $object;
    }

    public static function toJsonValue(mixed $value): string|int|float|bool|null
    {
        if (is_int($value) && abs($value) > self::MAX_EXACT_INTEGER) {
            throw new \InvalidArgumentException("integer $value is not exact as a double (|x| > 2^53)");
        }
        // The gRPC clients pass NaN and infinities through for trackd to judge; protobuf's
        // JSON has no way to write them in a Value, so over Connect JSON they cannot be sent.
        if (is_float($value) && !is_finite($value)) {
            throw new \InvalidArgumentException("$value cannot be sent as JSON");
        }
        if ($value === null || is_bool($value) || is_int($value) || is_float($value) || is_string($value)) {
            return $value;
        }
        throw new \InvalidArgumentException(
            'attribute and tag values are null, bool, int, float or string, not ' . get_debug_type($value)
        );
    }

    /**
     * A Value's JSON as decoded by json_decode(..., true), as plain PHP: whole numbers come back
     * as int (a Value number is a double, so trackd writes 7 as 7.0).
     */
    public static function fromJson(mixed $value): mixed
    {
        if (is_float($value) && is_finite($value) && floor($value) === $value
            && abs($value) <= self::MAX_EXACT_INTEGER) {
            return (int) $value;
        }
        if (is_array($value)) {
            return array_map([self::class, 'fromJson'], $value);
        }
        return $value;
    }
}

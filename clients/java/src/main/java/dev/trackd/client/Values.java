package dev.trackd.client;

import com.google.protobuf.NullValue;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Converts plain Java values to {@code google.protobuf.Value}, the type of trackd's attributes and
 * event tags.
 *
 * <p>Accepted: {@link String}, {@link Boolean}, {@link Number} (sent as a double) and {@code null}.
 * Anything else, or an integer that a double cannot hold exactly, is an {@link
 * IllegalArgumentException}: a silently rounded revenue or a {@code toString()} of an object would
 * be counted wrongly, far from the call that caused it. NaN and infinities pass through, as in
 * every client ({@code clients/testdata/values.json}): trackd accepts them as attributes and
 * answers INVALID_ARGUMENT for them as tags.
 */
public final class Values {
  /** The largest integer a double holds exactly, 2^53. */
  private static final long MAX_EXACT = 1L << 53;

  private Values() {}

  /** Converts one value. */
  public static Value toValue(Object value) {
    if (value == null) {
      return Value.newBuilder().setNullValue(NullValue.NULL_VALUE).build();
    }
    if (value instanceof Value) {
      return (Value) value;
    }
    if (value instanceof String) {
      return Value.newBuilder().setStringValue((String) value).build();
    }
    if (value instanceof Boolean) {
      return Value.newBuilder().setBoolValue((Boolean) value).build();
    }
    if (value instanceof Number) {
      return Value.newBuilder().setNumberValue(toDouble((Number) value)).build();
    }
    throw new IllegalArgumentException(
        "unsupported value type "
            + value.getClass().getName()
            + ": attributes and tags are String, Number, Boolean or null");
  }

  /** Converts a map of plain values; a null map is an empty one. Keys must not be null. */
  public static Map<String, Value> toValueMap(Map<String, ?> values) {
    if (values == null || values.isEmpty()) {
      return Collections.emptyMap();
    }
    Map<String, Value> converted = new LinkedHashMap<>(values.size() * 2);
    for (Map.Entry<String, ?> entry : values.entrySet()) {
      if (entry.getKey() == null) {
        throw new IllegalArgumentException("attribute and tag keys must not be null");
      }
      try {
        converted.put(entry.getKey(), toValue(entry.getValue()));
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException("key \"" + entry.getKey() + "\": " + e.getMessage(), e);
      }
    }
    return converted;
  }

  private static double toDouble(Number number) {
    if (number instanceof Long
        || number instanceof Integer
        || number instanceof Short
        || number instanceof Byte) {
      long n = number.longValue();
      if (n > MAX_EXACT || n < -MAX_EXACT) {
        throw new IllegalArgumentException(n + " cannot be sent exactly as a double");
      }
      return n;
    }
    if (number instanceof BigInteger) {
      BigInteger n = (BigInteger) number;
      if (n.abs().compareTo(BigInteger.valueOf(MAX_EXACT)) > 0) {
        throw new IllegalArgumentException(n + " cannot be sent exactly as a double");
      }
      return n.doubleValue();
    }
    return number.doubleValue();
  }

  /**
   * Converts a value trackd sends back (a flag's variables) to a plain one: String, Boolean, null,
   * Long for whole numbers a double holds exactly, Double otherwise, and (json variables) List
   * and Map of the same.
   */
  public static Object fromValue(Value value) {
    switch (value.getKindCase()) {
      case STRING_VALUE:
        return value.getStringValue();
      case BOOL_VALUE:
        return value.getBoolValue();
      case NUMBER_VALUE:
        double n = value.getNumberValue();
        if (n == Math.rint(n) && Math.abs(n) <= MAX_EXACT) {
          return (long) n;
        }
        return n;
      case LIST_VALUE:
        List<Object> list = new ArrayList<>();
        for (Value item : value.getListValue().getValuesList()) {
          list.add(fromValue(item));
        }
        return Collections.unmodifiableList(list);
      case STRUCT_VALUE:
        return fromStruct(value.getStructValue());
      default:
        return null;
    }
  }

  /** A Struct as an unmodifiable Map of {@link #fromValue} values. */
  public static Map<String, Object> fromStruct(Struct struct) {
    Map<String, Object> out = new LinkedHashMap<>();
    for (Map.Entry<String, Value> entry : struct.getFieldsMap().entrySet()) {
      out.put(entry.getKey(), fromValue(entry.getValue()));
    }
    return Collections.unmodifiableMap(out);
  }
}

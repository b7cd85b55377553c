package dev.trackd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.NullValue;
import com.google.protobuf.Value;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ValuesTest {
  @Test
  void stringsBecomeStringValues() {
    assertEquals(Value.newBuilder().setStringValue("iPhone").build(), Values.toValue("iPhone"));
  }

  @Test
  void booleansBecomeBoolValues() {
    assertEquals(Value.newBuilder().setBoolValue(true).build(), Values.toValue(Boolean.TRUE));
  }

  @Test
  void nullBecomesNullValue() {
    assertEquals(NullValue.NULL_VALUE, Values.toValue(null).getNullValue());
    assertEquals(Value.KindCase.NULL_VALUE, Values.toValue(null).getKindCase());
  }

  @Test
  void everyNumberTypeBecomesADouble() {
    assertEquals(4200.0, Values.toValue(4200).getNumberValue());
    assertEquals(31.0, Values.toValue(31L).getNumberValue());
    assertEquals(7.0, Values.toValue((short) 7).getNumberValue());
    assertEquals(1.5, Values.toValue(1.5f).getNumberValue());
    assertEquals(-0.25, Values.toValue(-0.25).getNumberValue());
    assertEquals(12.5, Values.toValue(new BigDecimal("12.5")).getNumberValue());
    assertEquals(99.0, Values.toValue(BigInteger.valueOf(99)).getNumberValue());
  }

  @Test
  void integersUpToTwoToThe53AreExact() {
    long max = 1L << 53;
    assertEquals((double) max, Values.toValue(max).getNumberValue());
    assertEquals((double) -max, Values.toValue(-max).getNumberValue());
  }

  @Test
  void integersADoubleCannotHoldAreRejected() {
    assertThrows(IllegalArgumentException.class, () -> Values.toValue((1L << 53) + 1));
    assertThrows(IllegalArgumentException.class, () -> Values.toValue(Long.MIN_VALUE));
    assertThrows(
        IllegalArgumentException.class, () -> Values.toValue(BigInteger.TWO.pow(64)));
  }

  @Test
  void nonFiniteNumbersPassThroughForTrackdToJudge() {
    assertTrue(Double.isNaN(Values.toValue(Double.NaN).getNumberValue()));
    assertEquals(
        Double.POSITIVE_INFINITY, Values.toValue(Double.POSITIVE_INFINITY).getNumberValue());
    assertEquals(
        Double.NEGATIVE_INFINITY, Values.toValue(Float.NEGATIVE_INFINITY).getNumberValue());
  }

  @Test
  void otherTypesAreRejected() {
    assertThrows(IllegalArgumentException.class, () -> Values.toValue(new Object()));
    assertThrows(IllegalArgumentException.class, () -> Values.toValue(List.of("a")));
    assertThrows(IllegalArgumentException.class, () -> Values.toValue(Map.of("a", 1)));
    assertThrows(IllegalArgumentException.class, () -> Values.toValue('c'));
  }

  @Test
  void aValueIsPassedThrough() {
    Value value = Value.newBuilder().setStringValue("x").build();
    assertEquals(value, Values.toValue(value));
  }

  @Test
  void mapsConvertEveryEntry() {
    Map<String, Object> attributes = new HashMap<>();
    attributes.put("device", "iPhone");
    attributes.put("age", 31);
    attributes.put("beta", false);
    attributes.put("plan", null);
    Map<String, Value> converted = Values.toValueMap(attributes);
    assertEquals(4, converted.size());
    assertEquals("iPhone", converted.get("device").getStringValue());
    assertEquals(31.0, converted.get("age").getNumberValue());
    assertEquals(false, converted.get("beta").getBoolValue());
    assertEquals(Value.KindCase.NULL_VALUE, converted.get("plan").getKindCase());
  }

  @Test
  void aNullMapIsEmpty() {
    assertTrue(Values.toValueMap(null).isEmpty());
  }

  @Test
  void aBadValueNamesItsKey() {
    Map<String, Object> tags = Map.of("revenue", new ArrayList<>());
    IllegalArgumentException error =
        assertThrows(IllegalArgumentException.class, () -> Values.toValueMap(tags));
    assertTrue(error.getMessage().contains("revenue"), error.getMessage());
  }

  @Test
  void aNullKeyIsRejected() {
    Map<String, Object> attributes = new HashMap<>();
    attributes.put(null, "x");
    assertThrows(IllegalArgumentException.class, () -> Values.toValueMap(attributes));
  }

  @Test
  void trackRequestsCarryConvertedAttributesAndTags() {
    var request =
        TrackdClient.trackRequest(
            "my_conversion", "user123", Map.of("DEVICE", "iPhone"), Map.of("revenue", 4200));
    assertEquals("my_conversion", request.getEventKey());
    assertEquals("user123", request.getUserId());
    assertEquals("iPhone", request.getAttributesOrThrow("DEVICE").getStringValue());
    assertEquals(4200.0, request.getTagsOrThrow("revenue").getNumberValue());
  }
}

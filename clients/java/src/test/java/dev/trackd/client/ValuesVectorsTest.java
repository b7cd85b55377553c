package dev.trackd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.Value;
import java.io.IOException;
import java.math.BigDecimal;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** clients/testdata/values.json: the value conversions every client makes, read by every client. */
class ValuesVectorsTest {
  /** Maven runs the tests in clients/java. */
  private static final Path VECTORS = Path.of("..", "testdata", "values.json");

  private static final Map<String, Object> NATIVE =
      Map.of(
          "nan", Double.NaN,
          "inf", Double.POSITIVE_INFINITY,
          "-inf", Double.NEGATIVE_INFINITY,
          "2^53+1", (1L << 53) + 1);

  private static JsonObject vectors() throws IOException {
    return JsonParser.parseString(Files.readString(VECTORS)).getAsJsonObject();
  }

  /** A JSON input as Java's natural type: Long for a whole number, Double for a fraction. */
  private static Object javaValue(JsonElement json) {
    if (json.isJsonNull()) {
      return null;
    }
    if (json.isJsonArray()) {
      List<Object> list = new ArrayList<>();
      json.getAsJsonArray().forEach(e -> list.add(javaValue(e)));
      return list;
    }
    if (json.isJsonObject()) {
      Map<String, Object> map = new LinkedHashMap<>();
      json.getAsJsonObject().entrySet().forEach(e -> map.put(e.getKey(), javaValue(e.getValue())));
      return map;
    }
    var primitive = json.getAsJsonPrimitive();
    if (primitive.isBoolean()) {
      return primitive.getAsBoolean();
    }
    if (primitive.isString()) {
      return primitive.getAsString();
    }
    BigDecimal number = primitive.getAsBigDecimal();
    return number.stripTrailingZeros().scale() <= 0 ? (Object) number.longValueExact() : number.doubleValue();
  }

  private static double expectedNumber(JsonElement value) {
    return value.getAsJsonPrimitive().isString()
        ? Double.parseDouble(value.getAsString()) // "NaN", "Infinity", "-Infinity"
        : value.getAsDouble();
  }

  private static void check(JsonObject vector, Object input) {
    for (String field : List.of("attributes", "tags")) {
      // Attributes and tags go through the same conversion; a one-key map keeps a null input.
      Map<String, Object> map = Collections.singletonMap("k", input);
      if (vector.has("error")) {
        assertThrows(IllegalArgumentException.class, () -> Values.toValueMap(map), field);
        continue;
      }
      Value got = Values.toValueMap(map).get("k");
      JsonObject expect = vector.getAsJsonObject("expect");
      switch (expect.get("kind").getAsString()) {
        case "string_value" -> assertEquals(expect.get("value").getAsString(), got.getStringValue());
        case "bool_value" -> assertEquals(expect.get("value").getAsBoolean(), got.getBoolValue());
        case "null_value" -> assertEquals(Value.KindCase.NULL_VALUE, got.getKindCase());
        case "number_value" -> {
          assertEquals(Value.KindCase.NUMBER_VALUE, got.getKindCase());
          // Double.compare treats NaN as equal to NaN.
          assertEquals(0, Double.compare(expectedNumber(expect.get("value")), got.getNumberValue()));
        }
        default -> throw new AssertionError("unknown kind in values.json: " + expect);
      }
      if (!expect.get("kind").getAsString().equals("null_value")) {
        assertEquals(
            expect.get("kind").getAsString().replace("_value", ""),
            got.getKindCase().name().toLowerCase().replace("_value", ""));
      }
    }
  }

  @Test
  void theVectorsNameOneNonFiniteRuleForAllClients() throws IOException {
    JsonObject rule = vectors().getAsJsonObject("non_finite");
    assertEquals("pass_through", rule.get("attributes").getAsString());
    assertEquals("pass_through", rule.get("tags").getAsString());
  }

  @TestFactory
  Stream<DynamicTest> sharedValueVectors() throws IOException {
    JsonObject all = vectors();
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonElement element : all.getAsJsonArray("values")) {
      JsonObject vector = element.getAsJsonObject();
      Object input = javaValue(vector.get("input"));
      tests.add(DynamicTest.dynamicTest(vector.get("name").getAsString(), () -> check(vector, input)));
    }
    for (JsonElement element : all.getAsJsonArray("native")) {
      JsonObject vector = element.getAsJsonObject();
      String name = vector.get("name").getAsString();
      assertTrue(NATIVE.containsKey(name), "native vector " + name + " is not constructed here");
      tests.add(DynamicTest.dynamicTest(name, () -> check(vector, NATIVE.get(name))));
    }
    return tests.stream();
  }
}

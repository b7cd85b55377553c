package dev.trackd.examples;

import dev.trackd.client.DecideOption;
import dev.trackd.client.Decision;
import dev.trackd.client.TrackProducer;
import dev.trackd.client.VariableTypeException;
import dev.trackd.client.TrackdClient;
import dev.trackd.v1.Attribution;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The end-to-end program of docs/dev/clients-e2e.md: prints one JSON object on its last line.
 * Env: TRACKD_ADDRESS, E2E_RUN_ID, and TRACKD_PRODUCER_ADDRESS for the producer (default
 * TRACKD_ADDRESS): the driver may route it through a proxy that breaks its stream after trackd
 * stored batches whose acknowledgements it then loses.
 */
public final class E2e {
  private static final int USERS = 200;
  private static final int PRODUCER_EVENTS = 10_000;

  private E2e() {}

  public static void main(String[] args) throws Exception {
    String address = System.getenv().getOrDefault("TRACKD_ADDRESS", "127.0.0.1:50051");
    String runId = System.getenv().getOrDefault("E2E_RUN_ID", "local");
    String user = "e2e-java-" + runId;
    String producerAddress = System.getenv().getOrDefault("TRACKD_PRODUCER_ADDRESS", address);

    try (TrackdClient client = TrackdClient.builder().address(address).build()) {
      Map<String, String> variations = new LinkedHashMap<>();
      for (int n = 0; n < USERS; n++) {
        String device = n % 3 != 0 ? "iPhone" : "Android";
        String name = "user-" + n;
        variations.put(name, client.activate("ab_iphone", name, Map.of("device", device)));
      }

      client.activate("ab_running", user, Map.of());
      List<String> attributed = new ArrayList<>();
      for (Attribution attribution :
          client.track(
              "my_conversion",
              user,
              Map.of("device", "iPhone"),
              Map.of("revenue", 4200, "category", "shoes"))) {
        attributed.add(attribution.getExperimentKey());
      }

      boolean notFound = false;
      try {
        client.track("no_such_event", "u", Map.of(), Map.of());
      } catch (StatusRuntimeException e) {
        notFound = e.getStatus().getCode() == Status.Code.NOT_FOUND;
      }

      Map<String, Object> decide = decideReport(client, runId);

      TrackdClient producerClient = TrackdClient.builder().address(producerAddress).build();
      TrackProducer producer =
          producerClient
              .producer()
              .batchSize(500)
              .backoff(java.time.Duration.ofMillis(50), java.time.Duration.ofSeconds(5))
              .build();
      try {
        for (int n = 0; n < PRODUCER_EVENTS; n++) {
          producer.send("signup", "p-java-" + runId + "-" + n, Map.of("device", "iPhone"), null);
        }
      } finally {
        producer.close(); // flushes: every batch acknowledged or given up
        producerClient.close();
      }
      TrackProducer.Stats stats = producer.stats();

      StringBuilder json = new StringBuilder();
      json.append("{\"language\": \"java\", \"variations\": {");
      String sep = "";
      for (Map.Entry<String, String> entry : variations.entrySet()) {
        json.append(sep).append(quote(entry.getKey())).append(": ").append(quote(entry.getValue()));
        sep = ", ";
      }
      json.append("}, \"attributed\": [");
      sep = "";
      for (String key : attributed) {
        json.append(sep).append(quote(key));
        sep = ", ";
      }
      json.append("], \"not_found\": ").append(notFound);
      json.append(", \"decide\": ").append(toJson(decide));
      json.append(", \"producer\": {\"sent\": ").append(stats.sent());
      json.append(", \"acked\": ").append(stats.acked());
      json.append(", \"batches\": ").append(stats.batches());
      json.append(", \"failed\": ").append(stats.failed());
      json.append(", \"retries\": ").append(stats.retries());
      json.append(", \"duplicates\": ").append(stats.duplicates()).append("}}");
      System.out.println(json);
    }
  }

  /** The decide part of the report (docs/dev/clients-e2e.md). */
  private static Map<String, Object> decideReport(TrackdClient client, String runId) {
    DecideOption quiet = DecideOption.DISABLE_DECISION_EVENT;
    Map<String, Object> decisions = new LinkedHashMap<>();
    boolean quietRecorded = false;
    for (int n = 0; n < 50; n++) {
      String device = n % 3 != 0 ? "iPhone" : "Android";
      Decision d = client.decide("user-" + n, "e2e_checkout", Map.of("device", device), quiet);
      decisions.put(
          "user-" + n,
          java.util.Arrays.asList(d.isEnabled(), d.getVariationKey(), d.getRuleKey(), d.getRuleType()));
      quietRecorded = quietRecorded || d.isImpressionRecorded();
    }
    Map<String, Decision> every = client.decideAll("user-1", Map.of("device", "iPhone"), quiet);

    String forcedUser = "forced-java-" + runId;
    client.setForcedDecision(forcedUser, "e2e_checkout", null, "treatment");
    Decision t = client.decide(forcedUser, "e2e_checkout", Map.of(), quiet);
    Map<String, Object> variables = new LinkedHashMap<>();
    variables.put("show_banner", t.getBoolean("show_banner"));
    variables.put("max_items", t.getInteger("max_items"));
    variables.put("discount", t.getDouble("discount"));
    variables.put("title", t.getString("title"));
    variables.put("layout", t.getJson("layout"));
    boolean typeError = false;
    try {
      t.getInteger("title");
    } catch (VariableTypeException e) {
      typeError = true;
    }
    List<Object> forced = new ArrayList<>();
    forced.add(client.getForcedDecision(forcedUser, "e2e_checkout", null));
    forced.add(client.removeForcedDecision(forcedUser, "e2e_checkout", null));
    forced.add(client.removeForcedDecision(forcedUser, "e2e_checkout", null));
    client.setForcedDecision(forcedUser, "e2e_checkout", null, "control");
    client.setForcedDecision(forcedUser, "e2e_checkout", "checkout_test", "control");
    forced.add(client.removeAllForcedDecisions(forcedUser));

    Decision unknown = client.decide(forcedUser, "no_such_flag", null);
    String user = "e2e-java-" + runId + "-flag";
    boolean recorded = client.decide(user, "e2e_checkout", Map.of("device", "iPhone")).isImpressionRecorded();
    List<Object> attributed = new ArrayList<>();
    for (Attribution a : client.track("checkout_conversion", user, Map.of("device", "iPhone"))) {
      attributed.add(a.getExperimentKey());
    }
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("decisions", decisions);
    out.put("all", new ArrayList<Object>(every.keySet()));
    out.put("variables", variables);
    out.put("type_error", typeError);
    out.put("unknown_flag_error", unknown.getError() != null && !unknown.isEnabled());
    out.put("forced", forced);
    out.put("attributed", attributed);
    out.put("impressions", List.of(quietRecorded, recorded));
    return out;
  }

  /** JSON of Maps, Lists, Strings, Numbers, Booleans and null. */
  private static String toJson(Object value) {
    if (value instanceof Map) {
      StringBuilder out = new StringBuilder("{");
      String sep = "";
      for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
        out.append(sep).append(quote((String) entry.getKey())).append(": ").append(toJson(entry.getValue()));
        sep = ", ";
      }
      return out.append('}').toString();
    }
    if (value instanceof List) {
      StringBuilder out = new StringBuilder("[");
      String sep = "";
      for (Object item : (List<?>) value) {
        out.append(sep).append(toJson(item));
        sep = ", ";
      }
      return out.append(']').toString();
    }
    if (value instanceof String || value == null) {
      return quote((String) value);
    }
    return String.valueOf(value); // Long, Integer, Double, Boolean
  }

  /** A JSON string (or null); keys and values here are plain ASCII identifiers. */
  private static String quote(String s) {
    if (s == null) {
      return "null";
    }
    StringBuilder out = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') {
        out.append('\\').append(c);
      } else if (c < 0x20) {
        out.append(String.format("\\u%04x", (int) c));
      } else {
        out.append(c);
      }
    }
    return out.append('"').toString();
  }
}

package dev.trackd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ListValue;
import com.google.protobuf.NullValue;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import dev.trackd.v1.DecideRequest;
import dev.trackd.v1.DecideResponse;
import dev.trackd.v1.FlagDecision;
import dev.trackd.v1.GetForcedDecisionRequest;
import dev.trackd.v1.GetForcedDecisionResponse;
import dev.trackd.v1.RemoveAllForcedDecisionsRequest;
import dev.trackd.v1.RemoveAllForcedDecisionsResponse;
import dev.trackd.v1.RemoveForcedDecisionRequest;
import dev.trackd.v1.RemoveForcedDecisionResponse;
import dev.trackd.v1.RuleType;
import dev.trackd.v1.SetForcedDecisionRequest;
import dev.trackd.v1.SetForcedDecisionResponse;
import dev.trackd.v1.TrackingServiceGrpc;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** decide, decideForKeys, decideAll and forced decisions against a service on loopback. */
class DecideTest {
  static Value str(String s) {
    return Value.newBuilder().setStringValue(s).build();
  }

  static Value num(double n) {
    return Value.newBuilder().setNumberValue(n).build();
  }

  static final Struct VARIABLES =
      Struct.newBuilder()
          .putFields("on", Value.newBuilder().setBoolValue(true).build())
          .putFields("count", num(3))
          .putFields("ratio", num(0.5))
          .putFields("label", str("blue"))
          .putFields(
              "config",
              Value.newBuilder()
                  .setStructValue(
                      Struct.newBuilder()
                          .putFields("size", num(10))
                          .putFields(
                              "tags",
                              Value.newBuilder()
                                  .setListValue(
                                      ListValue.newBuilder().addValues(str("a")).addValues(str("b")))
                                  .build())
                          .putFields(
                              "nested",
                              Value.newBuilder()
                                  .setStructValue(
                                      Struct.newBuilder()
                                          .putFields(
                                              "x",
                                              Value.newBuilder()
                                                  .setNullValue(NullValue.NULL_VALUE)
                                                  .build()))
                                  .build()))
                  .build())
          .build();

  /** Answers as trackd's Decide does for "checkout" (an A/B test) and "banner" (a rollout). */
  static final class FlagTracking extends TrackingServiceGrpc.TrackingServiceImplBase {
    final List<DecideRequest> requests = new ArrayList<>();
    final Map<List<String>, String> forced = new HashMap<>();

    @Override
    public synchronized void decide(DecideRequest request, StreamObserver<DecideResponse> out) {
      requests.add(request);
      if (request.getUserId().isEmpty()) {
        out.onError(Status.INVALID_ARGUMENT.withDescription("user_id must not be empty").asException());
        return;
      }
      Map<String, FlagDecision> known = new LinkedHashMap<>();
      known.put(
          "checkout",
          FlagDecision.newBuilder()
              .setFlagKey("checkout")
              .setEnabled(true)
              .setVariationKey(forced.getOrDefault(List.of(request.getUserId(), "checkout", ""), "treatment"))
              .setRuleKey("checkout_test")
              .setRuleType(RuleType.RULE_TYPE_FEATURE_TEST)
              .setVariables(VARIABLES)
              .addReasons("in the test")
              .setImpressionRecorded(true)
              .build());
      known.put(
          "banner",
          FlagDecision.newBuilder()
              .setFlagKey("banner")
              .setVariationKey("off")
              .setRuleKey("everyone_else")
              .setRuleType(RuleType.RULE_TYPE_ROLLOUT)
              .build());
      List<String> keys =
          request.getFlagKeysList().isEmpty() ? new ArrayList<>(known.keySet()) : request.getFlagKeysList();
      // "enabled-only-by-default" plays a daemon whose default options hold ENABLED_FLAGS_ONLY.
      boolean enabledOnly =
          request.getOptionsList().contains(dev.trackd.v1.DecideOption.DECIDE_OPTION_ENABLED_FLAGS_ONLY)
              || request.getUserId().equals("enabled-only-by-default");
      DecideResponse.Builder response = DecideResponse.newBuilder().setRevision("7");
      for (String key : keys) {
        FlagDecision d =
            known.getOrDefault(key, FlagDecision.newBuilder().setFlagKey(key).setError("no flag " + key).build());
        if (!enabledOnly || d.getEnabled()) {
          response.addDecisions(d);
        }
      }
      out.onNext(response.build());
      out.onCompleted();
    }

    @Override
    public synchronized void setForcedDecision(
        SetForcedDecisionRequest r, StreamObserver<SetForcedDecisionResponse> out) {
      forced.put(List.of(r.getUserId(), r.getFlagKey(), r.getRuleKey()), r.getVariationKey());
      out.onNext(SetForcedDecisionResponse.getDefaultInstance());
      out.onCompleted();
    }

    @Override
    public synchronized void getForcedDecision(
        GetForcedDecisionRequest r, StreamObserver<GetForcedDecisionResponse> out) {
      String key = forced.getOrDefault(List.of(r.getUserId(), r.getFlagKey(), r.getRuleKey()), "");
      out.onNext(GetForcedDecisionResponse.newBuilder().setVariationKey(key).build());
      out.onCompleted();
    }

    @Override
    public synchronized void removeForcedDecision(
        RemoveForcedDecisionRequest r, StreamObserver<RemoveForcedDecisionResponse> out) {
      boolean removed = forced.remove(List.of(r.getUserId(), r.getFlagKey(), r.getRuleKey())) != null;
      out.onNext(RemoveForcedDecisionResponse.newBuilder().setRemoved(removed).build());
      out.onCompleted();
    }

    @Override
    public synchronized void removeAllForcedDecisions(
        RemoveAllForcedDecisionsRequest r, StreamObserver<RemoveAllForcedDecisionsResponse> out) {
      int before = forced.size();
      forced.keySet().removeIf(k -> k.get(0).equals(r.getUserId()));
      out.onNext(RemoveAllForcedDecisionsResponse.newBuilder().setRemoved(before - forced.size()).build());
      out.onCompleted();
    }
  }

  private final FlagTracking service = new FlagTracking();
  private Server server;
  private ManagedChannel channel;
  private TrackdClient client;

  @BeforeEach
  void start() throws Exception {
    server = Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create()).addService(service).build().start();
    channel = ManagedChannelBuilder.forTarget("127.0.0.1:" + server.getPort()).usePlaintext().build();
    client = TrackdClient.builder().channel(channel).build();
  }

  @AfterEach
  void stop() throws Exception {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  @Test
  void decideReturnsTheDecisionWithPlainVariables() {
    Decision d =
        client.decide(
            "u1",
            "checkout",
            Map.of("device", "iPhone", "age", 30),
            DecideOption.INCLUDE_REASONS,
            DecideOption.DISABLE_DECISION_EVENT);
    assertEquals("checkout", d.getFlagKey());
    assertTrue(d.isEnabled());
    assertEquals("treatment", d.getVariationKey());
    assertEquals("checkout_test", d.getRuleKey());
    assertEquals("feature-test", d.getRuleType());
    Map<String, Object> nested = new HashMap<>();
    nested.put("x", null);
    assertEquals(
        Map.of(
            "on", true, "count", 3L, "ratio", 0.5, "label", "blue",
            "config", Map.of("size", 10L, "tags", List.of("a", "b"), "nested", nested)),
        d.getVariables());
    assertEquals(List.of("in the test"), d.getReasons());
    assertTrue(d.isImpressionRecorded());
    assertNull(d.getError());
    DecideRequest request = service.requests.get(0);
    assertEquals(List.of("checkout"), request.getFlagKeysList());
    assertEquals(
        List.of(
            dev.trackd.v1.DecideOption.DECIDE_OPTION_INCLUDE_REASONS,
            dev.trackd.v1.DecideOption.DECIDE_OPTION_DISABLE_DECISION_EVENT),
        request.getOptionsList());
    assertEquals(30.0, request.getAttributesOrThrow("age").getNumberValue());
    assertEquals("iPhone", request.getAttributesOrThrow("device").getStringValue());
  }

  @Test
  void typedGettersReturnJavaTypesAndRefuseOtherTypes() {
    Decision d = client.decide("u1", "checkout", null);
    assertTrue(d.getBoolean("on"));
    assertEquals(3L, d.getInteger("count"));
    assertEquals(0.5, d.getDouble("ratio"));
    assertEquals(3.0, d.getDouble("count"));
    assertEquals("blue", d.getString("label"));
    assertEquals(List.of("a", "b"), d.getJson("config").get("tags"));
    VariableTypeException e = assertThrows(VariableTypeException.class, () -> d.getInteger("label"));
    assertEquals("flag \"checkout\": variable \"label\" is String blue, not integer", e.getMessage());
    assertInstanceOf(ClassCastException.class, e);
    assertThrows(VariableTypeException.class, () -> d.getInteger("ratio"));
    assertThrows(VariableTypeException.class, () -> d.getBoolean("count"));
    assertThrows(VariableTypeException.class, () -> d.getJson("label"));
    assertThrows(NoSuchElementException.class, () -> d.getString("missing"));
  }

  @Test
  void decideAllAndForKeysKeepTrackdsOrderAndErrors() {
    assertEquals(List.of("checkout", "banner"), new ArrayList<>(client.decideAll("u1", null).keySet()));
    Map<String, Decision> some = client.decideForKeys("u1", List.of("banner", "nope", "checkout"), null);
    assertEquals(List.of("banner", "nope", "checkout"), new ArrayList<>(some.keySet()));
    assertEquals("rollout", some.get("banner").getRuleType());
    assertEquals("no flag nope", some.get("nope").getError());
    assertFalse(some.get("nope").isEnabled());
    assertNull(some.get("nope").getVariationKey());
    assertEquals(
        List.of("checkout"),
        new ArrayList<>(client.decideAll("u1", null, DecideOption.ENABLED_FLAGS_ONLY).keySet()));
    // As the SDK's decide: one flag always answers, ENABLED_FLAGS_ONLY is not sent.
    Decision banner = client.decide("u1", "banner", null, DecideOption.ENABLED_FLAGS_ONLY);
    assertEquals(List.of(false, "off", "everyone_else"), List.of(banner.isEnabled(), banner.getVariationKey(), banner.getRuleKey()));
    assertEquals(List.of(), service.requests.get(service.requests.size() - 1).getOptionsList());
    assertEquals(Decision.dropped("banner"), client.decide("enabled-only-by-default", "banner", null));
    assertEquals(Map.of(), client.decideForKeys("u1", List.of(), null));
    List<List<String>> sent = new ArrayList<>();
    service.requests.forEach(r -> sent.add(r.getFlagKeysList()));
    assertEquals(
        List.of(List.of(), List.of("banner", "nope", "checkout"), List.of(), List.of("banner"), List.of("banner")),
        sent);
  }

  @Test
  void errorsAreStatusExceptionsOrRefusedBeforeAnyCall() {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.decide("", "checkout", null));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertThrows(IllegalArgumentException.class, () -> client.decide("u1", "checkout", Map.of("l", List.of(1))));
    assertEquals(1, service.requests.size());
  }

  @Test
  void forcedDecisionsSetGetRemove() {
    assertNull(client.getForcedDecision("u1", "checkout", null));
    client.setForcedDecision("u1", "checkout", null, "control");
    client.setForcedDecision("u1", "checkout", "checkout_test", "treatment");
    client.setForcedDecision("u2", "checkout", null, "control");
    assertEquals("treatment", client.getForcedDecision("u1", "checkout", "checkout_test"));
    assertEquals("control", client.decide("u1", "checkout", null).getVariationKey());
    assertTrue(client.removeForcedDecision("u1", "checkout", null));
    assertFalse(client.removeForcedDecision("u1", "checkout", null));
    assertEquals(1, client.removeAllForcedDecisions("u1"));
    assertEquals("control", client.getForcedDecision("u2", "checkout", null));
  }
}

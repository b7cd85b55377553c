package dev.trackd.client;

import dev.trackd.v1.ActivateRequest;
import dev.trackd.v1.ActivateResponse;
import dev.trackd.v1.Attribution;
import dev.trackd.v1.DecideRequest;
import dev.trackd.v1.FlagDecision;
import dev.trackd.v1.GetForcedDecisionRequest;
import dev.trackd.v1.RemoveAllForcedDecisionsRequest;
import dev.trackd.v1.RemoveForcedDecisionRequest;
import dev.trackd.v1.SetForcedDecisionRequest;
import dev.trackd.v1.TrackRequest;
import dev.trackd.v1.TrackResponse;
import dev.trackd.v1.TrackingServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * A client of trackd with the Optimizely SDK's call shapes.
 *
 * <pre>{@code
 * try (TrackdClient trackd = TrackdClient.builder().address("127.0.0.1:50051").build()) {
 *   String variation = trackd.activate("my_experiment", "user123", Map.of("DEVICE", "iPhone"));
 *   trackd.track("my_conversion", "user123", Map.of("DEVICE", "iPhone"), Map.of("revenue", 4200));
 * }
 * }</pre>
 *
 * <p>Every call has the builder's deadline. Failures are {@link StatusRuntimeException}s, as from
 * any grpc-java stub: {@code e.getStatus().getCode() == Status.Code.NOT_FOUND} for an unknown
 * experiment or event. Attribute and tag maps take String, Number, Boolean and null values (see
 * {@link Values}); anything else is an {@link IllegalArgumentException} before any call is made.
 *
 * <p>A client is thread-safe; share one per process. {@link #close()} shuts its channel down.
 */
public final class TrackdClient implements AutoCloseable {
  private final ManagedChannel channel;
  private final boolean ownsChannel;
  private final Duration deadline;
  private final TrackingServiceGrpc.TrackingServiceBlockingStub stub;

  private TrackdClient(ManagedChannel channel, boolean ownsChannel, Duration deadline) {
    this.channel = channel;
    this.ownsChannel = ownsChannel;
    this.deadline = deadline;
    this.stub = TrackingServiceGrpc.newBlockingStub(channel);
  }

  public static Builder builder() {
    return new Builder();
  }

  /**
   * Decides the user's variation in an experiment and records an impression.
   *
   * @return the variation's key, or null when the user is in no variation (audience mismatch,
   *     outside traffic, experiment not running)
   * @throws StatusRuntimeException NOT_FOUND for an unknown experiment, INVALID_ARGUMENT for a bad
   *     request, DEADLINE_EXCEEDED, UNAVAILABLE ...
   */
  public String activate(String experimentKey, String userId, Map<String, ?> attributes) {
    String key = activateDetail(experimentKey, userId, attributes).getVariationKey();
    return key.isEmpty() ? null : key;
  }

  /**
   * Activate's whole answer: variation, ids, reason, impression_recorded, revision, and {@code
   * getAttributionDegraded()}, true when a store the call needed could not be used: the override
   * store (Redis) unreachable, so the user's forced variation was ignored; or the activation
   * store unreachable (Redis) or full (local LMDB), so the activation is not remembered for
   * attribution and the impression may repeat one already sent.
   */
  public ActivateResponse activateDetail(
      String experimentKey, String userId, Map<String, ?> attributes) {
    return withDeadline()
        .activate(
            ActivateRequest.newBuilder()
                .setExperimentKey(experimentKey)
                .setUserId(userId)
                .putAllAttributes(Values.toValueMap(attributes))
                .build());
  }

  /** {@link #activate(String, String, Map)} with no attributes. */
  public String activate(String experimentKey, String userId) {
    return activate(experimentKey, userId, null);
  }

  /**
   * Records a conversion event.
   *
   * @return the experiments (and variations) the conversion was attributed to; empty when the
   *     user was activated in none of the event's experiments within the activation TTL, or when
   *     trackd could not reach its Redis ({@link #trackDetail} tells the two apart)
   * @throws StatusRuntimeException NOT_FOUND for an unknown event key, INVALID_ARGUMENT for bad
   *     tags, RESOURCE_EXHAUSTED when trackd's outbox is full ...
   */
  public List<Attribution> track(
      String eventKey, String userId, Map<String, ?> attributes, Map<String, ?> tags) {
    return trackDetail(eventKey, userId, attributes, tags).getAttributionsList();
  }

  /**
   * Track's whole answer: attributions, uuid, and {@code getAttributionUnknown()}, true when trackd
   * could not read its activation store (Redis): the conversion was recorded, but without
   * attributions.
   */
  public TrackResponse trackDetail(
      String eventKey, String userId, Map<String, ?> attributes, Map<String, ?> tags) {
    return withDeadline().track(trackRequest(eventKey, userId, attributes, tags));
  }

  /** {@link #track(String, String, Map, Map)} with no tags. */
  public List<Attribution> track(String eventKey, String userId, Map<String, ?> attributes) {
    return track(eventKey, userId, attributes, null);
  }

  /** {@link #track(String, String, Map, Map)} with no attributes and no tags. */
  public List<Attribution> track(String eventKey, String userId) {
    return track(eventKey, userId, null, null);
  }

  /**
   * Decides one flag, as the SDK's {@code userContext.decide(flagKey)}. An unknown flag key is no
   * exception: the Decision carries {@link Decision#getError()}. As the SDK's decide, it ignores
   * ENABLED_FLAGS_ONLY: one flag always gets its decision (should trackd's
   * --default-decide-options drop a disabled flag anyway, a bare disabled Decision stands in).
   */
  public Decision decide(
      String userId, String flagKey, Map<String, ?> attributes, DecideOption... options) {
    DecideOption[] single =
        java.util.Arrays.stream(options)
            .filter(o -> o != DecideOption.ENABLED_FLAGS_ONLY)
            .toArray(DecideOption[]::new);
    Decision decision = decideForKeys(userId, List.of(flagKey), attributes, single).get(flagKey);
    return decision != null ? decision : Decision.dropped(flagKey);
  }

  /**
   * Flag key to Decision for these flags, in their order (ENABLED_FLAGS_ONLY drops disabled ones).
   */
  public Map<String, Decision> decideForKeys(
      String userId, List<String> flagKeys, Map<String, ?> attributes, DecideOption... options) {
    if (flagKeys.isEmpty()) {
      return Map.of(); // trackd reads no keys as every flag: decideAll says so explicitly
    }
    return decideRequest(userId, flagKeys, attributes, options);
  }

  /** Flag key to Decision for every flag of trackd's datafile, in its order. */
  public Map<String, Decision> decideAll(
      String userId, Map<String, ?> attributes, DecideOption... options) {
    return decideRequest(userId, List.of(), attributes, options);
  }

  private Map<String, Decision> decideRequest(
      String userId, List<String> flagKeys, Map<String, ?> attributes, DecideOption... options) {
    DecideRequest.Builder request =
        DecideRequest.newBuilder()
            .setUserId(userId)
            .putAllAttributes(Values.toValueMap(attributes))
            .addAllFlagKeys(flagKeys);
    for (DecideOption option : options) {
      request.addOptions(option.toProto());
    }
    Map<String, Decision> out = new LinkedHashMap<>();
    for (FlagDecision d : withDeadline().decide(request.build()).getDecisionsList()) {
      out.put(d.getFlagKey(), Decision.fromProto(d));
    }
    return out;
  }

  /** Forces the flag's variation for the user: for one rule, or (ruleKey null) the whole flag. */
  public void setForcedDecision(String userId, String flagKey, String ruleKey, String variationKey) {
    withDeadline()
        .setForcedDecision(
            SetForcedDecisionRequest.newBuilder()
                .setUserId(userId)
                .setFlagKey(flagKey)
                .setRuleKey(ruleKey == null ? "" : ruleKey)
                .setVariationKey(variationKey)
                .build());
  }

  /** The variation key forced for the flag (ruleKey null) or rule; null when none is. */
  public String getForcedDecision(String userId, String flagKey, String ruleKey) {
    String key =
        withDeadline()
            .getForcedDecision(
                GetForcedDecisionRequest.newBuilder()
                    .setUserId(userId)
                    .setFlagKey(flagKey)
                    .setRuleKey(ruleKey == null ? "" : ruleKey)
                    .build())
            .getVariationKey();
    return key.isEmpty() ? null : key;
  }

  /** Removes one forced decision; true when there was one. */
  public boolean removeForcedDecision(String userId, String flagKey, String ruleKey) {
    return withDeadline()
        .removeForcedDecision(
            RemoveForcedDecisionRequest.newBuilder()
                .setUserId(userId)
                .setFlagKey(flagKey)
                .setRuleKey(ruleKey == null ? "" : ruleKey)
                .build())
        .getRemoved();
  }

  /** Removes every forced decision of the user; returns how many there were. */
  public int removeAllForcedDecisions(String userId) {
    return withDeadline()
        .removeAllForcedDecisions(
            RemoveAllForcedDecisionsRequest.newBuilder().setUserId(userId).build())
        .getRemoved();
  }

  /** A batching producer on this client's channel: see {@link TrackProducer}. */
  public TrackProducer.Builder producer() {
    return new TrackProducer.Builder(channel);
  }

  /** The generated blocking stub with the client's deadline, for the RPCs the wrapper lacks. */
  public TrackingServiceGrpc.TrackingServiceBlockingStub stub() {
    return withDeadline();
  }

  /** The channel, e.g. for {@code TrackingServiceGrpc.newStub(client.channel())}. */
  public ManagedChannel channel() {
    return channel;
  }

  /** The deadline of each call. */
  public Duration deadline() {
    return deadline;
  }

  static TrackRequest trackRequest(
      String eventKey, String userId, Map<String, ?> attributes, Map<String, ?> tags) {
    return TrackRequest.newBuilder()
        .setEventKey(eventKey)
        .setUserId(userId)
        .putAllAttributes(Values.toValueMap(attributes))
        .putAllTags(Values.toValueMap(tags))
        .build();
  }

  private TrackingServiceGrpc.TrackingServiceBlockingStub withDeadline() {
    return stub.withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS);
  }

  /** Shuts the channel down (if the client created it), waiting up to 5 seconds. */
  @Override
  public void close() {
    if (!ownsChannel) {
      return;
    }
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  /** Builds a {@link TrackdClient}. */
  public static final class Builder {
    private String address = "127.0.0.1:50051";
    private Duration deadline = Duration.ofSeconds(5);
    private ManagedChannel channel;

    private Builder() {}

    /** trackd's "host:port"; plaintext. Default 127.0.0.1:50051. */
    public Builder address(String address) {
      this.address = Objects.requireNonNull(address, "address");
      return this;
    }

    /** The deadline of each unary call. Default 5 seconds. */
    public Builder deadline(Duration deadline) {
      if (deadline == null || deadline.isNegative() || deadline.isZero()) {
        throw new IllegalArgumentException("deadline must be positive");
      }
      this.deadline = deadline;
      return this;
    }

    /**
     * Uses a channel the caller built (TLS, interceptors, load balancing); the caller shuts it
     * down, not {@link TrackdClient#close()}.
     */
    public Builder channel(ManagedChannel channel) {
      this.channel = Objects.requireNonNull(channel, "channel");
      return this;
    }

    public TrackdClient build() {
      if (channel != null) {
        return new TrackdClient(channel, false, deadline);
      }
      ManagedChannel owned = ManagedChannelBuilder.forTarget(address).usePlaintext().build();
      return new TrackdClient(owned, true, deadline);
    }
  }
}

package dev.trackd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.trackd.v1.ActivateRequest;
import dev.trackd.v1.ActivateResponse;
import dev.trackd.v1.TrackRequest;
import dev.trackd.v1.TrackResponse;
import dev.trackd.v1.TrackStreamRequest;
import dev.trackd.v1.TrackStreamResponse;
import dev.trackd.v1.TrackingServiceGrpc;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The producer and the detail calls against a TrackingService served in this JVM on loopback. */
class TrackProducerTest {
  /** One batch as the server received it. */
  record Received(String producerId, long sequence, List<String> users) {}

  /**
   * Dedups (producer_id, sequence) as trackd does. It stores the first {@code loseAcks} batches and
   * then fails their streams with UNAVAILABLE before acknowledging them (the ack lost with the
   * connection). Activate and Track answer as trackd does while its Redis is unreachable.
   */
  static final class DedupTracking extends TrackingServiceGrpc.TrackingServiceImplBase {
    int loseAcks;
    boolean attributionUnknown;
    final List<String> stored = new ArrayList<>();
    final Map<String, Integer> committed = new HashMap<>();
    final List<Received> received = new ArrayList<>();

    @Override
    public StreamObserver<TrackStreamRequest> trackStream(
        StreamObserver<TrackStreamResponse> acks) {
      return new StreamObserver<>() {
        boolean failed;

        @Override
        public void onNext(TrackStreamRequest batch) {
          if (failed) {
            return;
          }
          List<String> users = batch.getEventsList().stream().map(TrackRequest::getUserId).toList();
          TrackStreamResponse.Builder ack =
              TrackStreamResponse.newBuilder()
                  .setSequence(batch.getSequence())
                  .setAttributionUnknown(attributionUnknown);
          synchronized (DedupTracking.this) {
            received.add(new Received(batch.getProducerId(), batch.getSequence(), users));
            String key = batch.getProducerId() + "/" + batch.getSequence();
            if (!batch.getProducerId().isEmpty() && committed.containsKey(key)) {
              ack.setAccepted(committed.get(key)).setDuplicate(true);
            } else {
              stored.addAll(users);
              committed.put(key, users.size());
              ack.setAccepted(users.size());
              if (loseAcks > 0) {
                loseAcks--;
                failed = true;
                acks.onError(Status.UNAVAILABLE.withDescription("stored, then the link broke").asException());
                return;
              }
            }
          }
          acks.onNext(ack.build());
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {
          if (!failed) {
            acks.onCompleted();
          }
        }
      };
    }

    @Override
    public void activate(ActivateRequest request, StreamObserver<ActivateResponse> response) {
      response.onNext(
          ActivateResponse.newBuilder().setVariationKey("a").setAttributionDegraded(true).build());
      response.onCompleted();
    }

    @Override
    public void track(TrackRequest request, StreamObserver<TrackResponse> response) {
      response.onNext(TrackResponse.newBuilder().setUuid("u-1").setAttributionUnknown(true).build());
      response.onCompleted();
    }
  }

  private Server server;
  private ManagedChannel channel;

  private TrackdClient serve(DedupTracking fake) throws IOException {
    server = Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create()).addService(fake).build().start();
    channel = ManagedChannelBuilder.forTarget("127.0.0.1:" + server.getPort()).usePlaintext().build();
    return TrackdClient.builder().channel(channel).build();
  }

  @AfterEach
  void stop() throws InterruptedException {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    if (server != null) {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static void sendN(TrackProducer producer, int n) throws InterruptedException {
    for (int i = 0; i < n; i++) {
      producer.send("signup", "u" + i, Map.of("device", "iPhone"), null);
    }
  }

  @Test
  void aBatchStoredBeforeTheStreamBrokeIsResentWithItsIdAndStoredOnce() throws Exception {
    DedupTracking fake = new DedupTracking();
    fake.loseAcks = 2;
    TrackdClient client = serve(fake);
    TrackProducer producer =
        client.producer().batchSize(10).maxPendingBatches(1).backoff(Duration.ofMillis(1), Duration.ofMillis(20)).build();
    sendN(producer, 100);
    producer.close();
    TrackProducer.Stats stats = producer.stats();
    assertEquals(100, stats.acked(), stats.toString());
    assertEquals(2, stats.duplicates(), stats.toString());
    assertEquals(0, stats.failed(), stats.toString());
    synchronized (fake) {
      assertEquals(100, fake.stored.size(), "stored exactly once");
      assertEquals(100, new HashSet<>(fake.stored).size());
      UUID.fromString(producer.producerId()); // a random UUID
      Set<Long> sequences = new HashSet<>();
      long last = 0;
      for (Received r : fake.received) {
        assertEquals(producer.producerId(), r.producerId());
        if (sequences.add(r.sequence())) {
          assertTrue(r.sequence() > last, "sequences first sent in order");
          last = r.sequence();
        }
      }
      assertEquals(10, sequences.size(), "one sequence per batch, never reused");
      assertEquals(fake.received.get(0), fake.received.get(1), "the very same batch resent");
    }
  }

  @Test
  void aNamedProducerRestartedDoesNotReuseSequences() throws Exception {
    DedupTracking fake = new DedupTracking();
    TrackdClient client = serve(fake);
    for (int run = 0; run < 2; run++) {
      try (TrackProducer producer = client.producer().batchSize(5).producerId("checkout-1").build()) {
        sendN(producer, 10);
        producer.flush();
        assertEquals(0, producer.stats().duplicates());
      }
    }
    synchronized (fake) {
      assertEquals(20, fake.stored.size());
      assertTrue(fake.received.stream().allMatch(r -> r.producerId().equals("checkout-1")));
    }
  }

  @Test
  void eventsStoredWithoutAttributionAreCounted() throws Exception {
    DedupTracking fake = new DedupTracking();
    fake.attributionUnknown = true;
    TrackProducer producer = serve(fake).producer().batchSize(10).build();
    sendN(producer, 30);
    producer.close();
    assertEquals(30, producer.stats().attributionUnknown());
  }

  @Test
  void detailCallsCarryAttributionDegradedAndUnknown() throws Exception {
    TrackdClient client = serve(new DedupTracking());
    assertTrue(client.activateDetail("ab_running", "u", null).getAttributionDegraded());
    TrackResponse conversion = client.trackDetail("my_conversion", "u", null, Map.of("revenue", 1));
    assertTrue(conversion.getAttributionUnknown());
    assertEquals("u-1", conversion.getUuid());
  }
}

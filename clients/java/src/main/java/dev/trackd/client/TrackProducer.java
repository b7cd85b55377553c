package dev.trackd.client;

import dev.trackd.v1.TrackRequest;
import dev.trackd.v1.TrackStreamRequest;
import dev.trackd.v1.TrackStreamResponse;
import dev.trackd.v1.TrackingServiceGrpc;
import io.grpc.Channel;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A batching producer of conversion events on trackd's TrackStream.
 *
 * <p>{@link #send} buffers an event; a batch goes out when {@code batchSize} events are buffered
 * or {@code flushInterval} has passed. trackd acknowledges each batch once its events are durably
 * stored.
 *
 * <p>Delivery is exactly once within trackd's dedup window: every batch carries the producer's
 * {@link #producerId()} (a random UUID unless the builder names one) and a sequence never reused
 * (sequences start at the wall clock in microseconds, so a producer restarted with the same id
 * does not reuse one either). Batches not yet acknowledged when the stream fails are sent again,
 * in order, with the same id and sequence, on a new stream, with exponential backoff, up to
 * {@code maxAttempts} times; a batch trackd stored just before the stream broke is acknowledged
 * again as a duplicate and not stored again ({@link Stats#duplicates()}). A whole batch rejected
 * with RESOURCE_EXHAUSTED or UNAVAILABLE is retried the same way; events trackd rejects one by
 * one (unknown event key, invalid tags) are counted as failed and not retried.
 *
 * <p>{@link #send} blocks while {@code maxPendingBatches} batches await acknowledgement, so a
 * producer faster than trackd is held back instead of buffering without bound. {@link #flush}
 * waits until everything sent so far is acknowledged or given up; {@link #close} flushes and ends
 * the stream. Thread-safe.
 *
 * <pre>{@code
 * try (TrackProducer producer = client.producer().batchSize(500).build()) {
 *   producer.send("signup", "user123", Map.of("device", "iPhone"), null);
 * } // close() flushes: every event is acknowledged or counted as failed
 * }</pre>
 */
public final class TrackProducer implements AutoCloseable {
  /**
   * Counters of a producer, in events unless named otherwise: {@code batches} acknowledged, batch
   * {@code retries}, {@code duplicates} (resent batches trackd had already stored: acknowledged
   * again, not stored again), {@code attributionUnknown} (events stored without attributions
   * because trackd could not reach its Redis).
   */
  public record Stats(
      long sent,
      long acked,
      long failed,
      long batches,
      long retries,
      long duplicates,
      long attributionUnknown) {}

  private final TrackingServiceGrpc.TrackingServiceStub stub;
  private final String producerId;
  private final int batchSize;
  private final long flushIntervalNanos;
  private final int maxPendingBatches;
  private final int maxAttempts;
  private final Duration initialBackoff;
  private final Duration maxBackoff;
  private final ScheduledExecutorService scheduler;

  private final ReentrantLock lock = new ReentrantLock();
  private final Condition changed = lock.newCondition();
  // Guarded by lock:
  private List<TrackRequest> buffer = new ArrayList<>();
  private long bufferStartedNanos;
  private final ArrayDeque<Batch> queued = new ArrayDeque<>();
  private final TreeMap<Long, Batch> inFlight = new TreeMap<>();
  private StreamObserver<TrackStreamRequest> requests;
  private int generation;
  private boolean reconnectScheduled;
  private int streamFailures;
  private long nextSequence = System.currentTimeMillis() * 1000;
  private boolean closed;
  private Status lastError;
  private long sent;
  private long acked;
  private long failed;
  private long batches;
  private long retries;
  private long duplicates;
  private long attributionUnknown;

  private static final class Batch {
    final long sequence;
    final List<TrackRequest> events;
    int attempts;
    long notBeforeNanos;

    Batch(long sequence, List<TrackRequest> events) {
      this.sequence = sequence;
      this.events = events;
    }
  }

  private TrackProducer(Builder builder) {
    this.stub = TrackingServiceGrpc.newStub(builder.channel);
    this.producerId =
        builder.producerId != null ? builder.producerId : UUID.randomUUID().toString();
    this.batchSize = builder.batchSize;
    this.flushIntervalNanos = builder.flushInterval.toNanos();
    this.maxPendingBatches = builder.maxPendingBatches;
    this.maxAttempts = builder.maxAttempts;
    this.initialBackoff = builder.initialBackoff;
    this.maxBackoff = builder.maxBackoff;
    this.scheduler =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread thread = new Thread(r, "trackd-producer");
              thread.setDaemon(true);
              return thread;
            });
    long tick = Math.max(1, flushIntervalNanos / 2);
    scheduler.scheduleWithFixedDelay(this::flushIfDue, tick, tick, TimeUnit.NANOSECONDS);
  }

  /**
   * Buffers one event, blocking while too many batches await acknowledgement.
   *
   * @throws IllegalArgumentException for attribute or tag values {@link Values} does not take
   * @throws IllegalStateException once the producer is closed
   */
  public void send(String eventKey, String userId, Map<String, ?> attributes, Map<String, ?> tags)
      throws InterruptedException {
    send(TrackdClient.trackRequest(eventKey, userId, attributes, tags));
  }

  /** Buffers one event built by the caller. */
  public void send(TrackRequest event) throws InterruptedException {
    lock.lock();
    try {
      while (!closed && queued.size() + inFlight.size() >= maxPendingBatches) {
        changed.await();
      }
      if (closed) {
        throw new IllegalStateException("producer is closed");
      }
      if (buffer.isEmpty()) {
        bufferStartedNanos = System.nanoTime();
      }
      buffer.add(event);
      if (buffer.size() >= batchSize) {
        seal();
        pump();
      }
    } finally {
      lock.unlock();
    }
  }

  /** Sends what is buffered and waits until every batch is acknowledged or given up. */
  public void flush() throws InterruptedException {
    flush(Duration.ofNanos(Long.MAX_VALUE));
  }

  /**
   * Sends what is buffered and waits up to {@code timeout} until every batch is acknowledged or
   * given up.
   *
   * @return false when the timeout passed first
   */
  public boolean flush(Duration timeout) throws InterruptedException {
    long remaining = timeout.toNanos();
    lock.lock();
    try {
      seal();
      pump();
      while (!queued.isEmpty() || !inFlight.isEmpty()) {
        if (remaining <= 0) {
          return false;
        }
        remaining = changed.awaitNanos(remaining);
      }
      return true;
    } finally {
      lock.unlock();
    }
  }

  /** Flushes, then ends the stream and the producer's timer thread. The channel stays open. */
  @Override
  public void close() {
    boolean interrupted = false;
    try {
      flush();
    } catch (InterruptedException e) {
      interrupted = true;
    }
    lock.lock();
    try {
      if (closed) {
        return;
      }
      closed = true;
      generation++; // later callbacks of the old stream are ignored
      if (requests != null) {
        requests.onCompleted();
        requests = null;
      }
      changed.signalAll();
    } finally {
      lock.unlock();
      scheduler.shutdownNow();
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /** The counters: events sent (first attempts), acknowledged as stored, failed for good. */
  public Stats stats() {
    lock.lock();
    try {
      return new Stats(sent, acked, failed, batches, retries, duplicates, attributionUnknown);
    } finally {
      lock.unlock();
    }
  }

  /** The id every batch of this producer carries, for trackd's deduplication of resends. */
  public String producerId() {
    return producerId;
  }

  /** Events sent at least once. */
  public long sent() {
    return stats().sent();
  }

  /** Events trackd acknowledged as stored ({@code accepted} summed over acknowledgements). */
  public long acked() {
    return stats().acked();
  }

  /** Batches trackd acknowledged. */
  public long batches() {
    return stats().batches();
  }

  /** The last stream failure or batch rejection, or null. */
  public Status lastError() {
    lock.lock();
    try {
      return lastError;
    } finally {
      lock.unlock();
    }
  }

  // ---- internals; every method below runs with the lock held ----

  private void flushIfDue() {
    lock.lock();
    try {
      if (!buffer.isEmpty() && System.nanoTime() - bufferStartedNanos >= flushIntervalNanos) {
        seal();
      }
      pump();
    } finally {
      lock.unlock();
    }
  }

  private void seal() {
    if (buffer.isEmpty()) {
      return;
    }
    queued.add(new Batch(nextSequence++, List.copyOf(buffer)));
    buffer = new ArrayList<>(batchSize);
  }

  /** Sends the queued batches that are due, opening a stream if there is none. */
  private void pump() {
    if (closed || queued.isEmpty() || reconnectScheduled) {
      return;
    }
    if (requests == null) {
      int gen = ++generation;
      requests = stub.trackStream(new AckObserver(gen));
    }
    long now = System.nanoTime();
    long earliestLater = Long.MAX_VALUE;
    for (Iterator<Batch> it = queued.iterator(); it.hasNext(); ) {
      Batch batch = it.next();
      if (batch.notBeforeNanos - now > 0) {
        // Nothing overtakes a batch waiting to be resent: batches go out in sequence order.
        earliestLater = batch.notBeforeNanos - now;
        break;
      }
      it.remove();
      batch.attempts++;
      if (batch.attempts == 1) {
        sent += batch.events.size();
      }
      inFlight.put(batch.sequence, batch);
      requests.onNext(
          TrackStreamRequest.newBuilder()
              .setSequence(batch.sequence)
              .setProducerId(producerId)
              .addAllEvents(batch.events)
              .build());
    }
    if (earliestLater != Long.MAX_VALUE) {
      scheduler.schedule(this::flushIfDue, earliestLater, TimeUnit.NANOSECONDS);
    }
  }

  private long backoffNanos(int failures) {
    long backoff = initialBackoff.toNanos() << Math.min(failures - 1, 20);
    return Math.min(backoff, maxBackoff.toNanos());
  }

  /** Puts a batch back in the queue, or gives it up after maxAttempts. */
  private void retryOrFail(Batch batch, Status status, boolean first) {
    lastError = status;
    if (batch.attempts >= maxAttempts) {
      failed += batch.events.size();
      return;
    }
    retries++;
    batch.notBeforeNanos = System.nanoTime() + backoffNanos(batch.attempts);
    if (first) {
      queued.addFirst(batch);
    } else {
      queued.add(batch);
    }
  }

  private void onAck(TrackStreamResponse ack) {
    Batch batch = inFlight.remove(ack.getSequence());
    if (batch == null) {
      return;
    }
    streamFailures = 0;
    if (ack.getCode() != 0) {
      Status status = Status.fromCodeValue(ack.getCode()).withDescription(ack.getMessage());
      Status.Code code = status.getCode();
      if (code == Status.Code.RESOURCE_EXHAUSTED || code == Status.Code.UNAVAILABLE) {
        retryOrFail(batch, status, false);
        pump();
      } else {
        lastError = status;
        failed += batch.events.size();
      }
    } else {
      // A duplicate carries the counts of the first commit, whose acknowledgement was lost.
      acked += ack.getAccepted();
      failed += ack.getErrorsCount();
      batches++;
      if (ack.getDuplicate()) {
        duplicates++;
      }
      if (ack.getAttributionUnknown()) {
        attributionUnknown += ack.getAccepted();
      }
      if (ack.getErrorsCount() > 0) {
        lastError =
            Status.fromCodeValue(ack.getErrors(0).getCode())
                .withDescription(ack.getErrors(0).getMessage());
      }
    }
    changed.signalAll();
  }

  private void onStreamLost(Status status) {
    requests = null;
    if (!inFlight.isEmpty()) {
      // Oldest first at the head of the queue, so batches go out again in order.
      for (Batch batch : inFlight.descendingMap().values()) {
        retryOrFail(batch, status, true);
      }
      inFlight.clear();
    }
    if (!queued.isEmpty() && !closed) {
      streamFailures++;
      reconnectScheduled = true;
      scheduler.schedule(
          () -> {
            lock.lock();
            try {
              reconnectScheduled = false;
              pump();
            } finally {
              lock.unlock();
            }
          },
          backoffNanos(streamFailures),
          TimeUnit.NANOSECONDS);
    }
    changed.signalAll();
  }

  private final class AckObserver implements StreamObserver<TrackStreamResponse> {
    private final int gen;

    AckObserver(int gen) {
      this.gen = gen;
    }

    @Override
    public void onNext(TrackStreamResponse ack) {
      lock.lock();
      try {
        if (gen == generation) {
          onAck(ack);
        }
      } finally {
        lock.unlock();
      }
    }

    @Override
    public void onError(Throwable t) {
      lock.lock();
      try {
        if (gen == generation) {
          onStreamLost(Status.fromThrowable(t));
        }
      } finally {
        lock.unlock();
      }
    }

    @Override
    public void onCompleted() {
      lock.lock();
      try {
        if (gen == generation) {
          onStreamLost(Status.UNAVAILABLE.withDescription("trackd ended the stream"));
        }
      } finally {
        lock.unlock();
      }
    }
  }

  /** Builds a {@link TrackProducer}; get one from {@link TrackdClient#producer()}. */
  public static final class Builder {
    private final Channel channel;
    private int batchSize = 500;
    private Duration flushInterval = Duration.ofMillis(200);
    private int maxPendingBatches = 8;
    private int maxAttempts = 10;
    private Duration initialBackoff = Duration.ofMillis(100);
    private Duration maxBackoff = Duration.ofSeconds(5);
    private String producerId;

    Builder(Channel channel) {
      this.channel = channel;
    }

    /** Events per batch (trackd's limit is 10,000 by default). Default 500. */
    public Builder batchSize(int batchSize) {
      if (batchSize < 1) {
        throw new IllegalArgumentException("batchSize must be at least 1");
      }
      this.batchSize = batchSize;
      return this;
    }

    /** How long an event may wait in the buffer before its batch is sent. Default 200 ms. */
    public Builder flushInterval(Duration flushInterval) {
      if (flushInterval.isNegative() || flushInterval.isZero()) {
        throw new IllegalArgumentException("flushInterval must be positive");
      }
      this.flushInterval = flushInterval;
      return this;
    }

    /** Batches sent or queued but not yet acknowledged before send() blocks. Default 8. */
    public Builder maxPendingBatches(int maxPendingBatches) {
      if (maxPendingBatches < 1) {
        throw new IllegalArgumentException("maxPendingBatches must be at least 1");
      }
      this.maxPendingBatches = maxPendingBatches;
      return this;
    }

    /** How many times a batch is sent before it is counted as failed. Default 10. */
    public Builder maxAttempts(int maxAttempts) {
      if (maxAttempts < 1) {
        throw new IllegalArgumentException("maxAttempts must be at least 1");
      }
      this.maxAttempts = maxAttempts;
      return this;
    }

    /** The first retry's delay, doubled on each further failure up to {@code max}. */
    public Builder backoff(Duration initial, Duration max) {
      if (initial.isNegative() || initial.isZero() || max.compareTo(initial) < 0) {
        throw new IllegalArgumentException("backoff must be positive with max >= initial");
      }
      this.initialBackoff = initial;
      this.maxBackoff = max;
      return this;
    }

    /**
     * This producer's id for trackd's deduplication of resent batches (1 to 128 bytes). Default:
     * a random UUID. Never run two producers with the same id at once.
     */
    public Builder producerId(String producerId) {
      int bytes = producerId.getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
      if (bytes < 1 || bytes > 128) {
        throw new IllegalArgumentException("producerId must be 1 to 128 bytes");
      }
      this.producerId = producerId;
      return this;
    }

    public TrackProducer build() {
      return new TrackProducer(this);
    }
  }
}

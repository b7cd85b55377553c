package dev.trackd.examples;

import dev.trackd.client.TrackdClient;
import dev.trackd.v1.Attribution;
import io.grpc.StatusRuntimeException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The Optimizely doc's Java snippet, against trackd. Address from TRACKD_ADDRESS (default
 * 127.0.0.1:50051).
 */
public final class Example {
  private Example() {}

  public static void main(String[] args) {
    String address = System.getenv().getOrDefault("TRACKD_ADDRESS", "127.0.0.1:50051");
    try (TrackdClient trackdClient = TrackdClient.builder().address(address).build()) {
      String eventKey = "my_conversion";
      String userId = "user123";

      Map<String, String> attributes = new HashMap<String, String>();
      attributes.put("DEVICE", "iPhone");
      attributes.put("AD_SOURCE", "my_campaign");

      // Activate the user in an experiment: the variation key, or null
      String variation = trackdClient.activate("ab_running", userId, attributes);
      System.out.println("ab_running: " + variation);

      // Track a conversion event for the provided user
      trackdClient.track(eventKey, userId);

      // Track a conversion event for the provided user with attributes
      List<Attribution> attributions = trackdClient.track(eventKey, userId, attributes);
      for (Attribution attribution : attributions) {
        System.out.println(
            "attributed to " + attribution.getExperimentKey() + "/" + attribution.getVariationKey());
      }
    } catch (StatusRuntimeException e) {
      System.err.println("trackd: " + e.getStatus());
      System.exit(1);
    }
  }
}

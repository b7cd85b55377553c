// The Optimizely SDK snippet, against trackd:  ./build/trackd_example [address]
#include <cstdlib>
#include <iostream>

#include "trackd/client.h"

int main(int argc, char** argv) {
  const char* env = std::getenv("TRACKD_ADDRESS");
  std::string address = argc > 1 ? argv[1] : (env ? env : "localhost:50051");
  trackd::Client optimizely_client(address, std::chrono::seconds(2));

  std::string event_key = "my_conversion";
  std::string user_id = "user123";

  trackd::Attributes attributes = {
      {"device", "iPhone"},
      {"ad_source", "my_campaign"},
  };

  try {
    // Put the user in an experiment first, so the conversion is attributed
    auto variation = optimizely_client.Activate("ab_running", user_id, attributes);
    std::cout << "ab_running: " << variation.value_or("(none)") << "\n";

    // Track a conversion event for the provided user
    optimizely_client.Track(event_key, user_id);

    // Track a conversion event for the provided user with attributes
    auto attributions = optimizely_client.Track(event_key, user_id, attributes, {{"revenue", 4200}});
    std::cout << "attributed to:";
    for (const auto& a : attributions) std::cout << " " << a.experiment_key;
    std::cout << "\n";

    optimizely_client.Track("no_such_event", user_id);
  } catch (const trackd::Error& e) {
    if (e.code() != grpc::StatusCode::NOT_FOUND) {
      std::cerr << "trackd: " << e.what() << "\n";
      return 1;
    }
    std::cout << "unknown event: " << trackd::StatusCodeName(e.code()) << " (" << e.details() << ")\n";
  }
  return 0;
}

// The wrapper against a TrackingService served in this process on loopback, answering as
// trackd does while its Redis activation store is unreachable.
#include <iostream>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "trackd/client.h"

namespace {

int passed = 0;
int failed = 0;

void Check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::cerr << "FAIL: " << what << "\n";
  }
}

class RedisDownTracking final : public trackd::v1::TrackingService::Service {
  grpc::Status Activate(grpc::ServerContext*, const trackd::v1::ActivateRequest* request,
                        trackd::v1::ActivateResponse* response) override {
    response->set_experiment_key(request->experiment_key());
    response->set_variation_key("a");
    response->set_attribution_degraded(true);
    return grpc::Status::OK;
  }

  grpc::Status Track(grpc::ServerContext*, const trackd::v1::TrackRequest*,
                     trackd::v1::TrackResponse* response) override {
    response->set_uuid("u-1");
    response->set_attribution_unknown(true);
    return grpc::Status::OK;
  }
};

}  // namespace

int main() {
  RedisDownTracking service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "cannot start the in-process server\n";
    return 1;
  }
  trackd::Client client("127.0.0.1:" + std::to_string(port));

  Check(client.ActivateDetail("ab_running", "u", {{"device", "iPhone"}}).attribution_degraded(),
        "ActivateDetail carries attribution_degraded");
  Check(client.Activate("ab_running", "u") == std::optional<std::string>("a"), "Activate");
  trackd::v1::TrackResponse detail = client.TrackDetail("my_conversion", "u", {}, {{"revenue", 1}});
  Check(detail.attribution_unknown(), "TrackDetail carries attribution_unknown");
  Check(detail.uuid() == "u-1", "TrackDetail carries the uuid");
  Check(client.Track("my_conversion", "u").empty(), "Track: no attributions");

  server->Shutdown();
  std::cout << "client_test: " << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

// A thin C++ client of trackd's TrackingService with the Optimizely SDK's call
// shapes:
//
//   trackd::Client client("localhost:50051", std::chrono::seconds(2));
//   std::optional<std::string> v = client.Activate("ab_running", "user123", {{"device", "iPhone"}});
//   auto attributions = client.Track("my_conversion", "user123", {{"device", "iPhone"}},
//                                    {{"revenue", 4200}});
//
// Every call has a deadline; a failed call throws trackd::Error carrying the
// grpc::StatusCode.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "trackd/v1/tracking_service.grpc.pb.h"
#include "trackd/decision.h"
#include "trackd/values.h"

namespace trackd {

// A failed call: the gRPC status code and trackd's message.
class Error : public std::runtime_error {
 public:
  explicit Error(const grpc::Status& status);
  grpc::StatusCode code() const { return code_; }
  const std::string& details() const { return details_; }

 private:
  grpc::StatusCode code_;
  std::string details_;
};

// The name of a status code, e.g. "NOT_FOUND".
const char* StatusCodeName(grpc::StatusCode code);

// An experiment a conversion was counted for.
struct Attribution {
  std::string experiment_key;
  std::string variation_key;
  std::string experiment_id;
  std::string variation_id;
};

class Client {
 public:
  // Plaintext by default; pass grpc::SslCredentials(...) for TLS.
  explicit Client(const std::string& address,
                  std::chrono::milliseconds deadline = std::chrono::seconds(5),
                  std::shared_ptr<grpc::ChannelCredentials> credentials =
                      grpc::InsecureChannelCredentials());
  explicit Client(std::shared_ptr<grpc::Channel> channel,
                  std::chrono::milliseconds deadline = std::chrono::seconds(5));

  // Decides the user's variation and records an impression. Returns the
  // variation key, or std::nullopt when the user is in no variation.
  std::optional<std::string> Activate(const std::string& experiment_key,
                                      const std::string& user_id,
                                      const Attributes& attributes = {});

  // Activate's whole answer. attribution_degraded() is true when a store the
  // call needed could not be used: the override store (Redis) unreachable, so
  // the user's forced variation was ignored; or the activation store
  // unreachable (Redis) or full (local LMDB), so the activation is not
  // remembered for attribution and the impression may repeat one already sent.
  v1::ActivateResponse ActivateDetail(const std::string& experiment_key,
                                      const std::string& user_id,
                                      const Attributes& attributes = {});

  // Records a conversion event; returns the experiments it was attributed to
  // (empty when none, or when trackd could not reach its Redis: TrackDetail
  // tells the two apart).
  std::vector<Attribution> Track(const std::string& event_key, const std::string& user_id,
                                 const Attributes& attributes = {}, const Tags& tags = {});

  // Track's whole answer. attribution_unknown() is true when trackd could not
  // read its activation store (Redis): the conversion was recorded, but
  // without attributions.
  v1::TrackResponse TrackDetail(const std::string& event_key, const std::string& user_id,
                                const Attributes& attributes = {}, const Tags& tags = {});

  // Decides one flag, as the SDK's user_context.decide(flag_key). An unknown
  // flag key throws nothing: the Decision carries error. As the SDK's decide,
  // it ignores kEnabledFlagsOnly: one flag always gets its decision (should
  // trackd's --default-decide-options drop a disabled flag anyway, a bare
  // disabled Decision stands in).
  Decision Decide(const std::string& user_id, const std::string& flag_key,
                  const Attributes& attributes = {},
                  const std::vector<DecideOption>& options = {});

  // These flags' Decisions, in their order (kEnabledFlagsOnly drops disabled
  // ones). No keys decide nothing (DecideAll decides every flag).
  std::vector<Decision> DecideForKeys(const std::string& user_id,
                                      const std::vector<std::string>& flag_keys,
                                      const Attributes& attributes = {},
                                      const std::vector<DecideOption>& options = {});

  // Every flag of trackd's datafile, in its order.
  std::vector<Decision> DecideAll(const std::string& user_id, const Attributes& attributes = {},
                                  const std::vector<DecideOption>& options = {});

  // Forces the flag's variation for the user: for one rule, or (rule_key "")
  // for the whole flag.
  void SetForcedDecision(const std::string& user_id, const std::string& flag_key,
                         const std::string& variation_key, const std::string& rule_key = "");

  // The variation forced for the flag (or rule); std::nullopt when none is.
  std::optional<std::string> GetForcedDecision(const std::string& user_id,
                                               const std::string& flag_key,
                                               const std::string& rule_key = "");

  // Removes one forced decision; true when there was one.
  bool RemoveForcedDecision(const std::string& user_id, const std::string& flag_key,
                            const std::string& rule_key = "");

  // Removes every forced decision of the user; returns how many there were.
  std::uint32_t RemoveAllForcedDecisions(const std::string& user_id);

  // The generated stub, for the RPCs this wrapper does not cover.
  v1::TrackingService::Stub& stub() { return *stub_; }

 private:
  void PrepareContext(grpc::ClientContext* context) const;
  std::vector<Decision> DecideRequest(const std::string& user_id,
                                      const std::vector<std::string>& flag_keys,
                                      const Attributes& attributes,
                                      const std::vector<DecideOption>& options);
  // One unary call of the stub with the client's deadline; throws Error on failure.
  template <typename Request, typename Response>
  Response Call(grpc::Status (v1::TrackingService::Stub::*method)(grpc::ClientContext*,
                                                                  const Request&, Response*),
                const Request& request);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TrackingService::Stub> stub_;
  std::chrono::milliseconds deadline_;
};

}  // namespace trackd

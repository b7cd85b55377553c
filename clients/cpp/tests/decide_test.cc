// Decide, DecideForKeys, DecideAll and forced decisions against a TrackingService
// served in this process on loopback that answers as trackd's Decide does.
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
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

template <typename E, typename F>
std::string Throws(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (...) {
    return "<another exception>";
  }
  return "<nothing thrown>";
}

using Key = std::tuple<std::string, std::string, std::string>;

class FlagTracking final : public trackd::v1::TrackingService::Service {
 public:
  std::mutex mu;
  std::vector<trackd::v1::DecideRequest> requests;
  std::map<Key, std::string> forced;

  grpc::Status Decide(grpc::ServerContext*, const trackd::v1::DecideRequest* request,
                      trackd::v1::DecideResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    requests.push_back(*request);
    if (request->user_id().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "user_id must not be empty");
    }
    std::map<std::string, trackd::v1::FlagDecision> known;
    auto& checkout = known["checkout"];
    checkout.set_flag_key("checkout");
    checkout.set_enabled(true);
    auto it = forced.find({request->user_id(), "checkout", ""});
    checkout.set_variation_key(it == forced.end() ? "treatment" : it->second);
    checkout.set_rule_key("checkout_test");
    checkout.set_rule_type(trackd::v1::RULE_TYPE_FEATURE_TEST);
    (void)google::protobuf::util::JsonStringToMessage(
        R"({"on": true, "count": 3, "ratio": 0.5, "label": "blue",
            "config": {"size": 10, "tags": ["a", "b"], "nested": {"x": null}}})",
        checkout.mutable_variables());
    checkout.add_reasons("in the test");
    checkout.set_impression_recorded(true);
    auto& banner = known["banner"];
    banner.set_flag_key("banner");
    banner.set_variation_key("off");
    banner.set_rule_key("everyone_else");
    banner.set_rule_type(trackd::v1::RULE_TYPE_ROLLOUT);
    std::vector<std::string> keys(request->flag_keys().begin(), request->flag_keys().end());
    if (keys.empty()) keys = {"checkout", "banner"};
    // "enabled-only-by-default" plays a daemon whose default options hold ENABLED_FLAGS_ONLY.
    bool enabled_only = request->user_id() == "enabled-only-by-default" || std::find(request->options().begin(), request->options().end(),
                                  trackd::v1::DECIDE_OPTION_ENABLED_FLAGS_ONLY) !=
                        request->options().end();
    for (const auto& key : keys) {
      trackd::v1::FlagDecision d;
      if (known.count(key)) {
        d = known[key];
      } else {
        d.set_flag_key(key);
        d.set_error("no flag " + key);
      }
      if (!enabled_only || d.enabled()) *response->add_decisions() = d;
    }
    return grpc::Status::OK;
  }

  grpc::Status SetForcedDecision(grpc::ServerContext*,
                                 const trackd::v1::SetForcedDecisionRequest* r,
                                 trackd::v1::SetForcedDecisionResponse*) override {
    std::lock_guard<std::mutex> lock(mu);
    forced[{r->user_id(), r->flag_key(), r->rule_key()}] = r->variation_key();
    return grpc::Status::OK;
  }

  grpc::Status GetForcedDecision(grpc::ServerContext*,
                                 const trackd::v1::GetForcedDecisionRequest* r,
                                 trackd::v1::GetForcedDecisionResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    auto it = forced.find({r->user_id(), r->flag_key(), r->rule_key()});
    if (it != forced.end()) response->set_variation_key(it->second);
    return grpc::Status::OK;
  }

  grpc::Status RemoveForcedDecision(grpc::ServerContext*,
                                    const trackd::v1::RemoveForcedDecisionRequest* r,
                                    trackd::v1::RemoveForcedDecisionResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    response->set_removed(forced.erase({r->user_id(), r->flag_key(), r->rule_key()}) == 1);
    return grpc::Status::OK;
  }

  grpc::Status RemoveAllForcedDecisions(
      grpc::ServerContext*, const trackd::v1::RemoveAllForcedDecisionsRequest* r,
      trackd::v1::RemoveAllForcedDecisionsResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    std::uint32_t n = 0;
    for (auto it = forced.begin(); it != forced.end();) {
      if (std::get<0>(it->first) == r->user_id()) {
        it = forced.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    response->set_removed(n);
    return grpc::Status::OK;
  }
};

std::vector<std::string> KeysOf(const std::vector<trackd::Decision>& decisions) {
  std::vector<std::string> out;
  for (const auto& d : decisions) out.push_back(d.flag_key);
  return out;
}

}  // namespace

int main() {
  FlagTracking service;
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

  // Decide: the decision, the request's keys, options and converted attributes.
  trackd::Decision d = client.Decide("u1", "checkout", {{"device", "iPhone"}, {"age", 30}},
                                     {trackd::kIncludeReasons, trackd::kDisableDecisionEvent});
  Check(d.flag_key == "checkout" && d.enabled, "Decide: enabled");
  Check(d.variation_key == std::optional<std::string>("treatment"), "Decide: variation");
  Check(d.rule_key == std::optional<std::string>("checkout_test"), "Decide: rule key");
  Check(d.rule_type == std::optional<std::string>("feature-test"), "Decide: rule type");
  Check(d.reasons == std::vector<std::string>{"in the test"}, "Decide: reasons");
  Check(d.impression_recorded && !d.error, "Decide: impression, no error");
  const auto& request = service.requests.at(0);
  Check(request.flag_keys_size() == 1 && request.flag_keys(0) == "checkout", "request keys");
  Check(request.options_size() == 2 && request.options(0) == trackd::v1::DECIDE_OPTION_INCLUDE_REASONS &&
            request.options(1) == trackd::v1::DECIDE_OPTION_DISABLE_DECISION_EVENT,
        "request options");
  Check(request.attributes().at("age").number_value() == 30 &&
            request.attributes().at("device").string_value() == "iPhone",
        "request attributes");

  // Typed getters.
  Check(d.GetBoolean("on"), "GetBoolean");
  Check(d.GetInteger("count") == 3, "GetInteger");
  Check(d.GetDouble("ratio") == 0.5 && d.GetDouble("count") == 3.0, "GetDouble");
  Check(d.GetString("label") == "blue", "GetString");
  Check(d.GetJson("config").fields().at("size").number_value() == 10, "GetJson");
  google::protobuf::Struct reparsed;
  Check(google::protobuf::util::JsonStringToMessage(d.GetJsonString("config"), &reparsed).ok() &&
            google::protobuf::util::MessageDifferencer::Equals(reparsed, d.GetJson("config")) &&
            d.GetJsonString("config").find(R"("tags":["a","b"])") != std::string::npos,
        "GetJsonString: " + d.GetJsonString("config"));
  Check(Throws<trackd::VariableTypeError>([&] { d.GetInteger("label"); }) ==
            "trackd: flag \"checkout\": variable \"label\" is \"blue\", not integer",
        "GetInteger of a string");
  Check(Throws<trackd::VariableTypeError>([&] { d.GetInteger("ratio"); }).find("not integer") !=
            std::string::npos,
        "GetInteger of 0.5");
  Check(Throws<trackd::VariableTypeError>([&] { d.GetBoolean("count"); }).find("not boolean") !=
            std::string::npos,
        "GetBoolean of a number");
  Check(Throws<trackd::VariableTypeError>([&] { d.GetJson("label"); }).find("not json") !=
            std::string::npos,
        "GetJson of a string");
  Check(Throws<std::out_of_range>([&] { d.GetString("missing"); }).find("no variable") !=
            std::string::npos,
        "GetString of a missing variable");

  // DecideAll, DecideForKeys: trackd's order, unknown keys carry an error.
  service.requests.clear();
  Check(KeysOf(client.DecideAll("u1")) == std::vector<std::string>{"checkout", "banner"},
        "DecideAll order");
  auto some = client.DecideForKeys("u1", {"banner", "nope", "checkout"});
  Check(KeysOf(some) == std::vector<std::string>{"banner", "nope", "checkout"}, "DecideForKeys order");
  Check(some.at(0).rule_type == std::optional<std::string>("rollout"), "rollout rule type");
  Check(some.at(1).error == std::optional<std::string>("no flag nope") && !some.at(1).enabled &&
            !some.at(1).variation_key && !some.at(1).rule_type,
        "unknown flag carries an error");
  Check(KeysOf(client.DecideAll("u1", {}, {trackd::kEnabledFlagsOnly})) ==
            std::vector<std::string>{"checkout"},
        "DecideAll enabled only");
  // As the SDK's decide: one flag always answers, kEnabledFlagsOnly is not sent.
  auto banner = client.Decide("u1", "banner", {}, {trackd::kEnabledFlagsOnly});
  Check(!banner.enabled && banner.variation_key == std::optional<std::string>("off") &&
            banner.rule_key == std::optional<std::string>("everyone_else"),
        "Decide with kEnabledFlagsOnly of a disabled flag");
  Check(service.requests.back().options_size() == 0, "Decide does not send kEnabledFlagsOnly");
  auto dropped = client.Decide("enabled-only-by-default", "banner");
  Check(dropped.flag_key == "banner" && !dropped.enabled && !dropped.variation_key,
        "Decide of a flag the daemon left out");
  Check(client.DecideForKeys("u1", {}).empty(), "DecideForKeys of no keys");
  Check(service.requests.size() == 5, "no keys sends no request");

  // Errors.
  auto code = grpc::StatusCode::OK;
  try {
    client.Decide("", "checkout");
  } catch (const trackd::Error& e) {
    code = e.code();
  }
  Check(code == grpc::StatusCode::INVALID_ARGUMENT, "empty user id: INVALID_ARGUMENT");

  // Forced decisions.
  Check(!client.GetForcedDecision("u1", "checkout"), "no forced decision yet");
  client.SetForcedDecision("u1", "checkout", "control");
  client.SetForcedDecision("u1", "checkout", "treatment", "checkout_test");
  client.SetForcedDecision("u2", "checkout", "control");
  Check(client.GetForcedDecision("u1", "checkout", "checkout_test") ==
            std::optional<std::string>("treatment"),
        "rule's forced decision");
  Check(client.Decide("u1", "checkout").variation_key == std::optional<std::string>("control"),
        "forced Decide");
  Check(client.RemoveForcedDecision("u1", "checkout"), "RemoveForcedDecision");
  Check(!client.RemoveForcedDecision("u1", "checkout"), "RemoveForcedDecision twice");
  Check(client.RemoveAllForcedDecisions("u1") == 1, "RemoveAllForcedDecisions");
  Check(client.GetForcedDecision("u2", "checkout") == std::optional<std::string>("control"),
        "another user's forced decision stays");

  server->Shutdown();
  std::cout << "decide_test: " << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

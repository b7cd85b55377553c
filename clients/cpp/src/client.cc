#include "trackd/client.h"

namespace trackd {

const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

Error::Error(const grpc::Status& status)
    : std::runtime_error(std::string(StatusCodeName(status.error_code())) + ": " +
                         status.error_message()),
      code_(status.error_code()),
      details_(status.error_message()) {}

Client::Client(const std::string& address, std::chrono::milliseconds deadline,
               std::shared_ptr<grpc::ChannelCredentials> credentials)
    : Client(grpc::CreateChannel(address, std::move(credentials)), deadline) {}

Client::Client(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds deadline)
    : channel_(std::move(channel)),
      stub_(v1::TrackingService::NewStub(channel_)),
      deadline_(deadline) {
  if (deadline_.count() <= 0) throw std::invalid_argument("trackd: deadline must be positive");
}

void Client::PrepareContext(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() + deadline_);
}

std::optional<std::string> Client::Activate(const std::string& experiment_key,
                                            const std::string& user_id,
                                            const Attributes& attributes) {
  v1::ActivateResponse response = ActivateDetail(experiment_key, user_id, attributes);
  if (response.variation_key().empty()) return std::nullopt;
  return response.variation_key();
}

template <typename Request, typename Response>
Response Client::Call(grpc::Status (v1::TrackingService::Stub::*method)(grpc::ClientContext*,
                                                                        const Request&, Response*),
                      const Request& request) {
  Response response;
  grpc::ClientContext context;
  PrepareContext(&context);
  grpc::Status status = ((*stub_).*method)(&context, request, &response);
  if (!status.ok()) throw Error(status);
  return response;
}

v1::ActivateResponse Client::ActivateDetail(const std::string& experiment_key,
                                            const std::string& user_id,
                                            const Attributes& attributes) {
  v1::ActivateRequest request;
  request.set_experiment_key(experiment_key);
  request.set_user_id(user_id);
  ToProtoMap(attributes, request.mutable_attributes());
  return Call(&v1::TrackingService::Stub::Activate, request);
}

std::vector<Attribution> Client::Track(const std::string& event_key, const std::string& user_id,
                                       const Attributes& attributes, const Tags& tags) {
  v1::TrackResponse response = TrackDetail(event_key, user_id, attributes, tags);
  std::vector<Attribution> out;
  out.reserve(static_cast<size_t>(response.attributions_size()));
  for (const auto& a : response.attributions()) {
    out.push_back({a.experiment_key(), a.variation_key(), a.experiment_id(), a.variation_id()});
  }
  return out;
}

v1::TrackResponse Client::TrackDetail(const std::string& event_key, const std::string& user_id,
                                      const Attributes& attributes, const Tags& tags) {
  v1::TrackRequest request;
  request.set_event_key(event_key);
  request.set_user_id(user_id);
  ToProtoMap(attributes, request.mutable_attributes());
  ToProtoMap(tags, request.mutable_tags());
  return Call(&v1::TrackingService::Stub::Track, request);
}

Decision Client::Decide(const std::string& user_id, const std::string& flag_key,
                        const Attributes& attributes, const std::vector<DecideOption>& options) {
  std::vector<DecideOption> single;
  for (DecideOption option : options) {
    if (option != kEnabledFlagsOnly) single.push_back(option);
  }
  for (Decision& d : DecideForKeys(user_id, {flag_key}, attributes, single)) {
    if (d.flag_key == flag_key) return std::move(d);
  }
  Decision dropped;
  dropped.flag_key = flag_key;
  return dropped;
}

std::vector<Decision> Client::DecideForKeys(const std::string& user_id,
                                            const std::vector<std::string>& flag_keys,
                                            const Attributes& attributes,
                                            const std::vector<DecideOption>& options) {
  if (flag_keys.empty()) return {};  // trackd reads no keys as every flag
  return DecideRequest(user_id, flag_keys, attributes, options);
}

std::vector<Decision> Client::DecideAll(const std::string& user_id, const Attributes& attributes,
                                        const std::vector<DecideOption>& options) {
  return DecideRequest(user_id, {}, attributes, options);
}

std::vector<Decision> Client::DecideRequest(const std::string& user_id,
                                            const std::vector<std::string>& flag_keys,
                                            const Attributes& attributes,
                                            const std::vector<DecideOption>& options) {
  v1::DecideRequest request;
  request.set_user_id(user_id);
  ToProtoMap(attributes, request.mutable_attributes());
  for (const auto& key : flag_keys) request.add_flag_keys(key);
  for (DecideOption option : options) request.add_options(option);
  v1::DecideResponse response = Call(&v1::TrackingService::Stub::Decide, request);
  std::vector<Decision> out;
  out.reserve(static_cast<size_t>(response.decisions_size()));
  for (const auto& d : response.decisions()) out.push_back(Decision::FromProto(d));
  return out;
}

void Client::SetForcedDecision(const std::string& user_id, const std::string& flag_key,
                               const std::string& variation_key, const std::string& rule_key) {
  v1::SetForcedDecisionRequest request;
  request.set_user_id(user_id);
  request.set_flag_key(flag_key);
  request.set_rule_key(rule_key);
  request.set_variation_key(variation_key);
  Call(&v1::TrackingService::Stub::SetForcedDecision, request);
}

std::optional<std::string> Client::GetForcedDecision(const std::string& user_id,
                                                     const std::string& flag_key,
                                                     const std::string& rule_key) {
  v1::GetForcedDecisionRequest request;
  request.set_user_id(user_id);
  request.set_flag_key(flag_key);
  request.set_rule_key(rule_key);
  std::string key = Call(&v1::TrackingService::Stub::GetForcedDecision, request).variation_key();
  if (key.empty()) return std::nullopt;
  return key;
}

bool Client::RemoveForcedDecision(const std::string& user_id, const std::string& flag_key,
                                  const std::string& rule_key) {
  v1::RemoveForcedDecisionRequest request;
  request.set_user_id(user_id);
  request.set_flag_key(flag_key);
  request.set_rule_key(rule_key);
  return Call(&v1::TrackingService::Stub::RemoveForcedDecision, request).removed();
}

std::uint32_t Client::RemoveAllForcedDecisions(const std::string& user_id) {
  v1::RemoveAllForcedDecisionsRequest request;
  request.set_user_id(user_id);
  return Call(&v1::TrackingService::Stub::RemoveAllForcedDecisions, request).removed();
}

}  // namespace trackd

#include "trackd/decision.h"

#include <google/protobuf/util/json_util.h>

#include "trackd/values.h"

namespace trackd {
namespace {

std::optional<std::string> NonEmpty(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

std::optional<std::string> RuleTypeName(v1::RuleType type) {
  switch (type) {
    case v1::RULE_TYPE_EXPERIMENT: return "experiment";
    case v1::RULE_TYPE_FEATURE_TEST: return "feature-test";
    case v1::RULE_TYPE_ROLLOUT: return "rollout";
    case v1::RULE_TYPE_HOLDOUT: return "holdout";
    default: return std::nullopt;
  }
}

}  // namespace

Decision Decision::FromProto(const v1::FlagDecision& message) {
  Decision d;
  d.flag_key = message.flag_key();
  d.enabled = message.enabled();
  d.variation_key = NonEmpty(message.variation_key());
  d.rule_key = NonEmpty(message.rule_key());
  d.rule_type = RuleTypeName(message.rule_type());
  d.variables = message.variables();
  d.reasons.assign(message.reasons().begin(), message.reasons().end());
  d.impression_recorded = message.impression_recorded();
  d.error = NonEmpty(message.error());
  return d;
}

const google::protobuf::Value& Decision::Variable(const std::string& key) const {
  auto it = variables.fields().find(key);
  if (it == variables.fields().end()) {
    throw std::out_of_range("trackd: flag \"" + flag_key + "\" has no variable \"" + key + "\"");
  }
  return it->second;
}

void Decision::Mismatch(const std::string& key, const char* wanted) const {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(Variable(key), &json);
  throw VariableTypeError("trackd: flag \"" + flag_key + "\": variable \"" + key + "\" is " +
                          json + ", not " + wanted);
}

bool Decision::GetBoolean(const std::string& key) const {
  const auto& v = Variable(key);
  if (v.kind_case() != google::protobuf::Value::kBoolValue) Mismatch(key, "boolean");
  return v.bool_value();
}

std::int64_t Decision::GetInteger(const std::string& key) const {
  const auto& v = Variable(key);
  if (v.kind_case() == google::protobuf::Value::kNumberValue) {
    // FromProto is the one Value -> native conversion: whole numbers become integers.
    Value native = trackd::FromProto(v);
    if (const auto* i = std::get_if<std::int64_t>(&native.variant())) return *i;
  }
  Mismatch(key, "integer");
}

double Decision::GetDouble(const std::string& key) const {
  const auto& v = Variable(key);
  if (v.kind_case() != google::protobuf::Value::kNumberValue) Mismatch(key, "double");
  return v.number_value();
}

std::string Decision::GetString(const std::string& key) const {
  const auto& v = Variable(key);
  if (v.kind_case() != google::protobuf::Value::kStringValue) Mismatch(key, "string");
  return v.string_value();
}

const google::protobuf::Struct& Decision::GetJson(const std::string& key) const {
  const auto& v = Variable(key);
  if (v.kind_case() != google::protobuf::Value::kStructValue) Mismatch(key, "json");
  return v.struct_value();
}

std::string Decision::GetJsonString(const std::string& key) const {
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(GetJson(key), &json);
  if (!status.ok()) throw std::runtime_error("trackd: cannot print variable \"" + key + "\"");
  return json;
}

}  // namespace trackd

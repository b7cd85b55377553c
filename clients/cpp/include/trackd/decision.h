// Feature flags: one flag's decision with typed variable getters, as the
// Optimizely SDK's OptimizelyDecision, and the decide options.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <google/protobuf/struct.pb.h>

#include "trackd/v1/tracking_service.pb.h"

namespace trackd {

// What changes a decide call, as the SDK's OptimizelyDecideOption.
using DecideOption = v1::DecideOption;
inline constexpr DecideOption kDisableDecisionEvent = v1::DECIDE_OPTION_DISABLE_DECISION_EVENT;
inline constexpr DecideOption kEnabledFlagsOnly = v1::DECIDE_OPTION_ENABLED_FLAGS_ONLY;
inline constexpr DecideOption kIgnoreUserProfileService =
    v1::DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE;
inline constexpr DecideOption kIncludeReasons = v1::DECIDE_OPTION_INCLUDE_REASONS;
inline constexpr DecideOption kExcludeVariables = v1::DECIDE_OPTION_EXCLUDE_VARIABLES;

// A variable was read with a getter of another type than its own.
class VariableTypeError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// One flag's decision. variation_key and rule_key are empty optionals when
// none decided; rule_type is "experiment", "feature-test", "rollout",
// "holdout" or empty. error is set (and enabled false) when the flag could not
// be decided, e.g. an unknown flag key. The getters throw VariableTypeError
// for another type and std::out_of_range when the flag has no such variable.
struct Decision {
  std::string flag_key;
  bool enabled = false;
  std::optional<std::string> variation_key;
  std::optional<std::string> rule_key;
  std::optional<std::string> rule_type;
  google::protobuf::Struct variables;  // json variables as nested Structs
  std::vector<std::string> reasons;    // only with kIncludeReasons
  bool impression_recorded = false;
  std::optional<std::string> error;

  static Decision FromProto(const v1::FlagDecision& message);

  bool GetBoolean(const std::string& key) const;
  std::int64_t GetInteger(const std::string& key) const;
  // A double with a whole value arrives as a whole number: it comes back a double.
  double GetDouble(const std::string& key) const;
  std::string GetString(const std::string& key) const;
  // A json variable's object, and the same as a JSON text.
  const google::protobuf::Struct& GetJson(const std::string& key) const;
  std::string GetJsonString(const std::string& key) const;

 private:
  const google::protobuf::Value& Variable(const std::string& key) const;
  [[noreturn]] void Mismatch(const std::string& key, const char* wanted) const;
};

}  // namespace trackd

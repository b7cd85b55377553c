// Plain C++ values for trackd's attributes and tags, and their conversion to
// google.protobuf.Value.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include <google/protobuf/map.h>
#include <google/protobuf/struct.pb.h>

namespace trackd {

// One attribute or tag value: null, a boolean, an integer, a number or a string.
// The constructors take any of those without the usual variant surprises
// ("iPhone" stays a string, 4200 stays an integer).
class Value {
 public:
  using Variant = std::variant<std::nullptr_t, bool, std::int64_t, double, std::string>;

  Value() : v_(nullptr) {}
  Value(std::nullptr_t) : v_(nullptr) {}
  Value(bool b) : v_(b) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Value(T i) : v_(static_cast<std::int64_t>(i)) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
      if (i > static_cast<T>(std::numeric_limits<std::int64_t>::max())) {
        throw std::out_of_range("trackd::Value: unsigned integer too large");
      }
    }
  }
  template <typename T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Value(T d) : v_(static_cast<double>(d)) {}

  const Variant& variant() const { return v_; }
  bool operator==(const Value& other) const { return v_ == other.v_; }
  bool operator!=(const Value& other) const { return v_ != other.v_; }

 private:
  Variant v_;
};

using Attributes = std::map<std::string, Value>;
using Tags = std::map<std::string, Value>;

// Integers beyond this are not exact as a double, the only number a Value holds.
inline constexpr std::int64_t kMaxExactInteger = std::int64_t{1} << 53;

// Value -> google.protobuf.Value. Throws std::invalid_argument for an integer
// with |x| > 2^53.
google::protobuf::Value ToProto(const Value& value);

// Fills a request's attributes or tags map (cleared first).
void ToProtoMap(const std::map<std::string, Value>& values,
                google::protobuf::Map<std::string, google::protobuf::Value>* out);

// google.protobuf.Value -> Value; a whole number with |x| <= 2^53 becomes an
// integer. Throws std::invalid_argument for lists and structs.
Value FromProto(const google::protobuf::Value& value);

}  // namespace trackd

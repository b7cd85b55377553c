#include "trackd/values.h"

#include <cmath>

namespace trackd {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

google::protobuf::Value ToProto(const Value& value) {
  google::protobuf::Value out;
  std::visit(Overloaded{
                 [&](std::nullptr_t) { out.set_null_value(google::protobuf::NULL_VALUE); },
                 [&](bool b) { out.set_bool_value(b); },
                 [&](std::int64_t i) {
                   if (i > kMaxExactInteger || i < -kMaxExactInteger) {
                     throw std::invalid_argument("trackd: integer " + std::to_string(i) +
                                                 " is not exact as a double (|x| > 2^53)");
                   }
                   out.set_number_value(static_cast<double>(i));
                 },
                 [&](double d) { out.set_number_value(d); },
                 [&](const std::string& s) { out.set_string_value(s); },
             },
             value.variant());
  return out;
}

void ToProtoMap(const std::map<std::string, Value>& values,
                google::protobuf::Map<std::string, google::protobuf::Value>* out) {
  out->clear();
  for (const auto& [key, value] : values) {
    (*out)[key] = ToProto(value);
  }
}

Value FromProto(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNullValue:
    case google::protobuf::Value::KIND_NOT_SET:
      return nullptr;
    case google::protobuf::Value::kBoolValue:
      return value.bool_value();
    case google::protobuf::Value::kStringValue:
      return value.string_value();
    case google::protobuf::Value::kNumberValue: {
      const double d = value.number_value();
      if (std::isfinite(d) && d == std::trunc(d) &&
          std::fabs(d) <= static_cast<double>(kMaxExactInteger)) {
        return static_cast<std::int64_t>(d);
      }
      return d;
    }
    default:
      throw std::invalid_argument("trackd: lists and structs are not attribute or tag values");
  }
}

}  // namespace trackd

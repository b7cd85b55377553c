// Attributes and tags become google.protobuf.Value exactly; errors keep their status.
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <string>

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

template <typename E>
bool Throws(const std::function<void()>& f) {
  try {
    f();
  } catch (const E&) {
    return true;
  }
  return false;
}

using PV = google::protobuf::Value;

}  // namespace

int main() {
  using trackd::FromProto;
  using trackd::ToProto;
  using trackd::Value;

  // Literals keep their kind: a string literal is not a bool, an int is not a double.
  Check(ToProto("iPhone").kind_case() == PV::kStringValue, "string literal -> string_value");
  Check(ToProto("iPhone").string_value() == "iPhone", "string literal content");
  Check(ToProto(std::string("x")).string_value() == "x", "std::string -> string_value");
  Check(ToProto(true).kind_case() == PV::kBoolValue && ToProto(true).bool_value(), "bool");
  Check(ToProto(nullptr).kind_case() == PV::kNullValue, "nullptr -> null_value");
  Check(ToProto(Value()).kind_case() == PV::kNullValue, "default -> null_value");
  Check(ToProto(4200).number_value() == 4200.0, "int -> exact number_value");
  Check(ToProto(int64_t{1} << 53).number_value() == 9007199254740992.0, "2^53 is exact");
  Check(ToProto(1.5).number_value() == 1.5, "double");
  Check(ToProto(2.5f).number_value() == 2.5, "float");
  Check(std::holds_alternative<std::int64_t>(Value(4200).variant()), "int stays an integer");
  Check(std::holds_alternative<std::string>(Value("a").variant()), "literal stays a string");

  // Integers a double cannot hold exactly are refused rather than rounded.
  Check(Throws<std::invalid_argument>([] { ToProto((int64_t{1} << 53) + 1); }),
        "2^53+1 refused");
  Check(Throws<std::out_of_range>([] { Value(std::numeric_limits<std::uint64_t>::max()); }),
        "huge unsigned refused");

  // Round trip, with whole numbers back as integers.
  Check(FromProto(ToProto(4200)) == Value(4200), "4200 round trip");
  Check(FromProto(ToProto(1.25)) == Value(1.25), "1.25 round trip");
  Check(FromProto(ToProto("s")) == Value("s"), "string round trip");
  Check(FromProto(ToProto(false)) == Value(false), "bool round trip");
  Check(FromProto(ToProto(nullptr)) == Value(nullptr), "null round trip");
  PV list;
  list.mutable_list_value();
  Check(Throws<std::invalid_argument>([&] { FromProto(list); }), "list refused");

  // A request's maps carry the converted values through the wire format.
  trackd::v1::TrackRequest request;
  trackd::ToProtoMap({{"device", "iPhone"}}, request.mutable_attributes());
  trackd::ToProtoMap({{"revenue", 4200}, {"category", "shoes"}}, request.mutable_tags());
  trackd::v1::TrackRequest decoded;
  Check(decoded.ParseFromString(request.SerializeAsString()), "parse");
  Check(decoded.attributes().at("device").string_value() == "iPhone", "attribute on the wire");
  Check(decoded.tags().at("revenue").number_value() == 4200.0, "revenue on the wire");
  Check(decoded.tags().at("category").string_value() == "shoes", "category on the wire");
  Check(decoded.tags().size() == 2, "two tags");

  // Errors carry the status code.
  trackd::Error error(grpc::Status(grpc::StatusCode::NOT_FOUND, "event 'x' is not in the datafile"));
  Check(error.code() == grpc::StatusCode::NOT_FOUND, "error code");
  Check(error.details() == "event 'x' is not in the datafile", "error details");
  Check(std::string(error.what()).rfind("NOT_FOUND: ", 0) == 0, "error message names the code");

  // An unreachable daemon fails within the deadline, as UNAVAILABLE or DEADLINE_EXCEEDED.
  trackd::Client client("127.0.0.1:1", std::chrono::milliseconds(500));
  auto started = std::chrono::steady_clock::now();
  grpc::StatusCode code = grpc::StatusCode::OK;
  try {
    client.Activate("ab_running", "u");
  } catch (const trackd::Error& e) {
    code = e.code();
  }
  Check(code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED,
        "unreachable daemon -> UNAVAILABLE/DEADLINE_EXCEEDED");
  Check(std::chrono::steady_clock::now() - started < std::chrono::seconds(5), "within deadline");

  std::cout << "values_test: " << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

// clients/testdata/values.json: the value conversions every client makes, read by every
// client's tests. The file is read with protobuf's own JSON parser (into a Struct); a whole
// JSON number becomes the int64 a caller would write, a fraction a double.
#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "trackd/values.h"

namespace {

using PV = google::protobuf::Value;

// Lists and maps are not attribute or tag values in C++ at all: trackd::Value has no
// constructor for them, so the "unsupported" vectors are refused at compile time.
static_assert(!std::is_constructible_v<trackd::Value, std::vector<int>>);
static_assert(!std::is_constructible_v<trackd::Value, std::map<std::string, int>>);
static_assert(!std::is_constructible_v<trackd::Value, google::protobuf::ListValue>);

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

// A JSON input as the C++ value a caller would write.
trackd::Value Native(const PV& json) {
  switch (json.kind_case()) {
    case PV::kStringValue:
      return json.string_value();
    case PV::kBoolValue:
      return json.bool_value();
    case PV::kNumberValue: {
      const double d = json.number_value();
      if (d == std::trunc(d)) return static_cast<std::int64_t>(d);
      return d;
    }
    default:
      return nullptr;
  }
}

double ExpectedNumber(const PV& value) {
  if (value.kind_case() == PV::kStringValue) {
    const std::string& s = value.string_value();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  return value.number_value();
}

void CheckVector(const google::protobuf::Struct& vector, const trackd::Value& input) {
  const auto& fields = vector.fields();
  const std::string name = fields.at("name").string_value();
  google::protobuf::Map<std::string, PV> out;
  if (fields.contains("error")) {
    bool refused = false;
    try {
      trackd::ToProtoMap({{"k", input}}, &out);
    } catch (const std::invalid_argument&) {
      refused = true;
    }
    Check(refused, name + ": refused with std::invalid_argument");
    return;
  }
  // Attributes and tags go through the same conversion (ToProtoMap).
  trackd::ToProtoMap({{"k", input}}, &out);
  const PV& got = out.at("k");
  const auto& expect = fields.at("expect").struct_value().fields();
  const std::string kind = expect.at("kind").string_value();
  const PV& want = expect.at("value");
  if (kind == "string_value") {
    Check(got.kind_case() == PV::kStringValue && got.string_value() == want.string_value(), name);
  } else if (kind == "bool_value") {
    Check(got.kind_case() == PV::kBoolValue && got.bool_value() == want.bool_value(), name);
  } else if (kind == "null_value") {
    Check(got.kind_case() == PV::kNullValue, name);
  } else if (kind == "number_value") {
    const double w = ExpectedNumber(want);
    Check(got.kind_case() == PV::kNumberValue &&
              (got.number_value() == w || (std::isnan(w) && std::isnan(got.number_value()))),
          name);
  } else {
    Check(false, name + ": unknown kind " + kind);
  }
}

}  // namespace

int main() {
  std::ifstream file(TRACKD_VALUE_VECTORS);
  std::stringstream text;
  text << file.rdbuf();
  google::protobuf::Struct vectors;
  if (!file || !google::protobuf::util::JsonStringToMessage(text.str(), &vectors).ok()) {
    std::cerr << "cannot read " << TRACKD_VALUE_VECTORS << "\n";
    return 1;
  }
  const auto& top = vectors.fields();
  const auto& rule = top.at("non_finite").struct_value().fields();
  Check(rule.at("attributes").string_value() == "pass_through" &&
            rule.at("tags").string_value() == "pass_through",
        "one non-finite rule: pass through");

  int unsupported = 0;
  for (const PV& item : top.at("values").list_value().values()) {
    const auto& fields = item.struct_value().fields();
    const PV& input = fields.at("input");
    if (input.kind_case() == PV::kListValue || input.kind_case() == PV::kStructValue) {
      // Not constructible (see the static_asserts): the vector must expect a refusal.
      Check(fields.at("error").string_value() == "unsupported",
            fields.at("name").string_value() + ": lists and objects are refused");
      ++unsupported;
      continue;
    }
    CheckVector(item.struct_value(), Native(input));
  }
  Check(unsupported > 0, "the vectors hold lists and objects");

  const std::map<std::string, trackd::Value> native = {
      {"nan", std::numeric_limits<double>::quiet_NaN()},
      {"inf", std::numeric_limits<double>::infinity()},
      {"-inf", -std::numeric_limits<double>::infinity()},
      {"2^53+1", (std::int64_t{1} << 53) + 1},
  };
  for (const PV& item : top.at("native").list_value().values()) {
    const std::string name = item.struct_value().fields().at("name").string_value();
    auto found = native.find(name);
    Check(found != native.end(), name + ": constructed here");
    if (found != native.end()) CheckVector(item.struct_value(), found->second);
  }

  std::cout << "vectors_test: " << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

// The end-to-end program of docs/dev/clients-e2e.md: prints one JSON object on
// the last line of stdout. Needs TRACKD_ADDRESS and E2E_RUN_ID.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "trackd/client.h"

namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    std::cerr << name << " is not set\n";
    std::exit(2);
  }
  return v;
}

std::string OptionalJson(const std::optional<std::string>& s) {
  return s ? JsonString(*s) : "null";
}

std::string Bool(bool b) { return b ? "true" : "false"; }

// The decide part of the report (docs/dev/clients-e2e.md).
std::string DecideReport(trackd::Client& client, const std::string& run_id) {
  const std::vector<trackd::DecideOption> quiet = {trackd::kDisableDecisionEvent};
  std::ostringstream out;
  out << "{\"decisions\":{";
  bool quiet_recorded = false;
  for (int n = 0; n < 50; ++n) {
    const std::string user = "user-" + std::to_string(n);
    trackd::Decision d =
        client.Decide(user, "e2e_checkout", {{"device", n % 3 ? "iPhone" : "Android"}}, quiet);
    out << (n ? "," : "") << JsonString(user) << ":[" << Bool(d.enabled) << ","
        << OptionalJson(d.variation_key) << "," << OptionalJson(d.rule_key) << ","
        << OptionalJson(d.rule_type) << "]";
    quiet_recorded = quiet_recorded || d.impression_recorded;
  }
  out << "},\"all\":[";
  auto every = client.DecideAll("user-1", {{"device", "iPhone"}}, quiet);
  for (size_t i = 0; i < every.size(); ++i) out << (i ? "," : "") << JsonString(every[i].flag_key);
  out << "]";

  const std::string forced_user = "forced-cpp-" + run_id;
  client.SetForcedDecision(forced_user, "e2e_checkout", "treatment");
  trackd::Decision t = client.Decide(forced_user, "e2e_checkout", {}, quiet);
  out << ",\"variables\":{\"show_banner\":" << Bool(t.GetBoolean("show_banner"))
      << ",\"max_items\":" << t.GetInteger("max_items")
      << ",\"discount\":" << t.GetDouble("discount")
      << ",\"title\":" << JsonString(t.GetString("title"))
      << ",\"layout\":" << t.GetJsonString("layout") << "}";
  bool type_error = false;
  try {
    t.GetInteger("title");
  } catch (const trackd::VariableTypeError&) {
    type_error = true;
  }
  out << ",\"type_error\":" << Bool(type_error);

  auto got = client.GetForcedDecision(forced_user, "e2e_checkout");
  bool removed = client.RemoveForcedDecision(forced_user, "e2e_checkout");
  bool again = client.RemoveForcedDecision(forced_user, "e2e_checkout");
  client.SetForcedDecision(forced_user, "e2e_checkout", "control");
  client.SetForcedDecision(forced_user, "e2e_checkout", "control", "checkout_test");
  std::uint32_t all = client.RemoveAllForcedDecisions(forced_user);
  out << ",\"forced\":[" << OptionalJson(got) << "," << Bool(removed) << "," << Bool(again) << ","
      << all << "]";

  trackd::Decision unknown = client.Decide(forced_user, "no_such_flag");
  out << ",\"unknown_flag_error\":" << Bool(unknown.error.has_value() && !unknown.enabled);

  const std::string user = "e2e-cpp-" + run_id + "-flag";
  bool recorded = client.Decide(user, "e2e_checkout", {{"device", "iPhone"}}).impression_recorded;
  auto attributions = client.Track("checkout_conversion", user, {{"device", "iPhone"}});
  out << ",\"attributed\":[";
  for (size_t i = 0; i < attributions.size(); ++i) {
    out << (i ? "," : "") << JsonString(attributions[i].experiment_key);
  }
  out << "],\"impressions\":[" << Bool(quiet_recorded) << "," << Bool(recorded) << "]}";
  return out.str();
}

}  // namespace

int main() {
  const std::string address = Env("TRACKD_ADDRESS");
  const std::string run_id = Env("E2E_RUN_ID");
  trackd::Client client(address, std::chrono::seconds(10));

  try {
    std::ostringstream variations;
    variations << "{";
    for (int n = 0; n < 200; ++n) {
      const std::string user = "user-" + std::to_string(n);
      auto v = client.Activate("ab_iphone", user, {{"device", n % 3 ? "iPhone" : "Android"}});
      variations << (n ? "," : "") << JsonString(user) << ":" << (v ? JsonString(*v) : "null");
    }
    variations << "}";

    const std::string user = "e2e-cpp-" + run_id;
    client.Activate("ab_running", user, {});
    auto attributions = client.Track("my_conversion", user, {{"device", "iPhone"}},
                                     {{"revenue", 4200}, {"category", "shoes"}});
    std::ostringstream attributed;
    attributed << "[";
    for (size_t i = 0; i < attributions.size(); ++i) {
      attributed << (i ? "," : "") << JsonString(attributions[i].experiment_key);
    }
    attributed << "]";

    bool not_found = false;
    try {
      client.Track("no_such_event", "u", {{"device", "iPhone"}}, {});
    } catch (const trackd::Error& e) {
      not_found = e.code() == grpc::StatusCode::NOT_FOUND;
    }

    const std::string decide = DecideReport(client, run_id);

    std::cout << "{\"language\":\"cpp\",\"variations\":" << variations.str()
              << ",\"attributed\":" << attributed.str()
              << ",\"not_found\":" << (not_found ? "true" : "false") << ",\"decide\":" << decide
              << ",\"producer\":null}"
              << std::endl;
  } catch (const trackd::Error& e) {
    std::cerr << "trackd e2e failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

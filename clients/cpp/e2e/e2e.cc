// The end-to-end program of docs/dev/clients-e2e.md: prints one JSON object on
// the last line of stdout. Needs TRACKD_ADDRESS and E2E_RUN_ID.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

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

    std::cout << "{\"language\":\"cpp\",\"variations\":" << variations.str()
              << ",\"attributed\":" << attributed.str()
              << ",\"not_found\":" << (not_found ? "true" : "false") << ",\"producer\":null}"
              << std::endl;
  } catch (const trackd::Error& e) {
    std::cerr << "trackd e2e failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

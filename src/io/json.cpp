// JSON text for the commands' one-line reports.
#include "lowbit/io/json.h"

#include <cstdio>

namespace lowbit {
namespace io {

std::string json_escaped(const std::string& text) {
  std::string out;
  for (const char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", u);
      out += buffer;
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace io
}  // namespace lowbit

// JSON text for the commands' one-line reports (torch-free; library lowbit_io).
#pragma once

#include <string>

namespace lowbit {
namespace io {

// A string as the inside of a JSON string: quotes, backslashes and control characters escaped
// (file paths may hold any of them).
std::string json_escaped(const std::string& text);

}  // namespace io
}  // namespace lowbit

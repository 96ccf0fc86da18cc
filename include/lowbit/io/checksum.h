// Checksums that find a corrupt checkpoint or model file before it gives wrong numbers
// (torch-free; library lowbit_io).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit {
namespace io {

// CRC-32 (ISO-HDLC, zlib's and ZIP's): crc32("123456789") == 0xCBF43926.
uint32_t crc32(std::string_view bytes);

// Checks a ZIP archive (PyTorch's checkpoint format) against the CRC-32 that ZIP stores for every
// member: the end of central directory (ZIP64 too), each central directory entry, its local header
// (same name), and the CRC-32 of its data (stored, or deflated and inflated here). PyTorch's own
// reader does not check them. Returns the number of members; throws std::runtime_error
// "ORIGIN: corrupt file: WHAT" at the first fault.
int64_t verify_zip(std::string_view archive, const std::string& origin);

// The checksum lowbit appends to the ONNX files it writes: a ModelProto metadata_props entry
// {key: "lowbit.crc32", value: 8 hex digits}, encoded as protobuf field 14 after the serialized
// model `body` (protobuf merges appended fields, so the file stays a valid ModelProto for every
// reader), over the bytes of `body`. Returns the bytes to append.
std::string onnx_checksum_trailer(std::string_view body);

enum class Checksum { kAbsent, kVerified };
// Verifies the trailer of onnx_checksum_trailer at the end of `file`: kVerified when it matches,
// kAbsent when the file does not end with one (files from other tools), and std::runtime_error
// "ORIGIN: corrupt file: ..." when the checksum does not match the bytes before it.
Checksum verify_onnx_checksum(std::string_view file, const std::string& origin);

}  // namespace io
}  // namespace lowbit

// Reader and writer for the safetensors format, used for every weights file
// of the project.
//
// Layout of a file:
//   [8 bytes]  N, the header length, as a little-endian uint64
//   [N bytes]  JSON header (UTF-8), for example
//                {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
//                 "__metadata__": {"step": "1000"}}
//              data_offsets are [begin, end) byte offsets relative to the
//              start of the data section. The writer pads the header with
//              spaces so that N (and thus the data section start) is a
//              multiple of 8.
//   [rest]     data section: raw little-endian, C-contiguous tensor bytes.
//
// Supported dtypes: F64, F32, F16, BF16, I64, I32, U8
//   (torch kFloat64, kFloat32, kFloat16, kBFloat16, kInt64, kInt32, kUInt8).
#pragma once

#include <torch/torch.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace arcflow::io {

using TensorMap = std::map<std::string, torch::Tensor>;
using Metadata = std::map<std::string, std::string>;

// The contents of one safetensors file.
struct SafetensorsFile {
  TensorMap tensors;  // CPU tensors, each owning its own (contiguous) memory
  Metadata metadata;  // the "__metadata__" object (empty if absent)
};

// Thrown for malformed safetensors input. The message always starts with the
// source name (usually the file path), followed by ": " and the problem, and
// names the tensor concerned when there is one.
class FormatError : public std::runtime_error {
 public:
  using runtime_error::runtime_error;
};

// Serializes `tensors` (any device, any strides) and `metadata` into the
// bytes of a safetensors file. Tensors are copied to CPU and made contiguous;
// they are written in sorted name order with contiguous data offsets.
// Throws std::invalid_argument naming the tensor for an undefined tensor, an
// unsupported dtype, or the reserved name "__metadata__"; and for names or
// metadata that are not valid UTF-8.
std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata = {});

// Parses the bytes of a safetensors file. `source_name` (typically the path)
// prefixes every error message. Throws FormatError for any malformed input;
// never returns a partial result.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& source_name);

// serialize_safetensors() + write_file_atomic(): the file at `path` is
// replaced atomically. Throws std::runtime_error naming `path` on I/O errors.
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// read_file() + parse_safetensors(bytes, path). Throws std::runtime_error
// naming `path` if the file cannot be read, FormatError if it is malformed.
SafetensorsFile load_safetensors(const std::string& path);

// The header of a safetensors file alone: what read_safetensors_header() returns. A tensor
// occupies bytes [data_offset + begin, data_offset + end) of the file.
struct SafetensorsHeader {
  struct Entry {
    torch::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // relative to the data section
  };
  std::map<std::string, Entry> tensors;
  Metadata metadata;
  uint64_t data_offset = 0;  // 8 + header length
};

// Reads and validates only the header of the file at `path` (the same checks as
// parse_safetensors, against the file's size), without reading or allocating any tensor data: a
// multi-gigabyte shard is inspected in microseconds. Throws std::runtime_error naming `path` if the
// file cannot be read, FormatError if it is malformed.
SafetensorsHeader read_safetensors_header(const std::string& path);

}  // namespace arcflow::io

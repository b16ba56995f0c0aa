// Implementation of arcflow/io/safetensors.h.
//
// Reader policy (strict, with the choices the format leaves open spelled out):
//  * Header length N must be <= kMaxHeaderBytes (100 MB, the limit of the
//    reference implementation) and must fit in the file; it is checked before
//    anything is allocated.
//  * The header must be a JSON object without duplicate keys (at any level),
//    nested at most kMaxJsonDepth levels deep.
//  * Each tensor entry must be an object with exactly the fields "dtype"
//    (string, known dtype), "shape" (array of non-negative integers) and
//    "data_offsets" (array of two non-negative integers, begin <= end <= size
//    of the data section, end - begin == numel * element size). Unknown fields
//    are rejected, so typos do not go unnoticed.
//  * "__metadata__", if present, must be an object whose values are strings.
//  * Tensors must not overlap (zero-byte tensors overlap nothing).
//  * Data-section bytes covered by no tensor (gaps, trailing bytes) are
//    TOLERATED: they are harmless, and other writers may align tensor data.
// Every violation throws FormatError("<source>: <problem>"); tensors are only
// materialized after the whole header has been validated.
#include "arcflow/io/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <vector>

#include "arcflow/io/atomic_file.h"

namespace arcflow::io {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; big-endian hosts would need byte swapping");

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int kMaxJsonDepth = 64;
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeInfo {
  const char* name;      // safetensors spelling
  torch::ScalarType type;
  uint64_t size;         // bytes per element
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"U8", torch::kUInt8, 1},
};

const DtypeInfo* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo* dtype_by_type(torch::ScalarType type) {
  for (const auto& d : kDtypes)
    if (type == d.type) return &d;
  return nullptr;
}

std::string supported_dtypes() {
  std::string s;
  for (const auto& d : kDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

// Throws FormatError "<source>: <problem>".
[[noreturn]] void fail(const std::string& source, const std::string& problem) {
  throw FormatError(source + ": " + problem);
}

// Header JSON parsing with duplicate-key and nesting-depth checks. nlohmann's
// DOM parser silently keeps the last of duplicate keys, which would hide a
// second definition of a tensor; the parser callback sees every key.
json parse_header_json(const char* begin, const char* end, const std::string& source) {
  std::vector<std::set<std::string>> open_objects;  // keys seen, per open object
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth)
          fail(source, "invalid header: JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.back().insert(parsed.get<std::string>()).second)
          fail(source, "invalid header: duplicate key '" + parsed.get<std::string>() + "'");
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        break;
      default:
        break;
    }
    return true;  // keep everything
  };
  try {
    return json::parse(begin, end, callback);
  } catch (const json::exception& e) {
    fail(source, std::string("invalid JSON in header: ") + e.what());
  }
}

// A validated header entry, before its tensor is created.
struct Entry {
  std::string name;
  const DtypeInfo* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// Reads a JSON value that must be a non-negative integer <= max.
// `what` describes the value for error messages.
uint64_t get_uint(const json& v, uint64_t max, const std::string& source, const std::string& what) {
  if (v.is_number_unsigned()) {
    const auto x = v.get<uint64_t>();
    if (x > max) fail(source, what + " is too large (" + std::to_string(x) + ")");
    return x;
  }
  if (v.is_number_integer()) fail(source, what + " is negative (" + v.dump() + ")");
  fail(source, what + " is not an integer (" + v.dump() + ")");
}

// Validates one tensor entry of the header against a data section of
// `data_size` bytes.
Entry parse_entry(const std::string& name, const json& v, uint64_t data_size, const std::string& source) {
  const std::string where = "tensor '" + name + "'";
  if (!v.is_object()) fail(source, where + ": entry is not a JSON object (got " + v.type_name() + ")");
  for (const auto& field : v.items()) {
    const auto& k = field.key();
    if (k != "dtype" && k != "shape" && k != "data_offsets")
      fail(source, where + ": unknown field '" + k + "'");
  }
  for (const char* required : {"dtype", "shape", "data_offsets"})
    if (!v.contains(required)) fail(source, where + ": missing field '" + required + "'");

  Entry e;
  e.name = name;

  // dtype
  const json& dt = v["dtype"];
  if (!dt.is_string()) fail(source, where + ": field 'dtype' is not a string (got " + dt.type_name() + ")");
  e.dtype = dtype_by_name(dt.get<std::string>());
  if (!e.dtype)
    fail(source, where + ": unknown dtype '" + dt.get<std::string>() + "' (supported: " + supported_dtypes() + ")");

  // shape. Torch computes contiguous strides as products of max(dim, 1), so
  // that product must fit in int64 even when some dim is 0; numel * element
  // size must fit too.
  const json& sh = v["shape"];
  if (!sh.is_array()) fail(source, where + ": field 'shape' is not an array (got " + sh.type_name() + ")");
  uint64_t stride_product = 1;
  bool has_zero = false;
  const auto int64_max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (size_t i = 0; i < sh.size(); ++i) {
    const uint64_t d = get_uint(sh[i], int64_max, source, where + ": shape dimension " + std::to_string(i));
    has_zero = has_zero || d == 0;
    if (__builtin_mul_overflow(stride_product, std::max<uint64_t>(d, 1), &stride_product) ||
        stride_product > int64_max)
      fail(source, where + ": shape " + sh.dump() + " overflows (element count does not fit in 64 bits)");
    e.shape.push_back(static_cast<int64_t>(d));
  }
  const uint64_t numel = has_zero ? 0 : stride_product;
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, e.dtype->size, &nbytes))
    fail(source, where + ": shape " + sh.dump() + " overflows (byte size does not fit in 64 bits)");

  // data_offsets
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    fail(source, where + ": field 'data_offsets' is not an array of two integers (got " + off.dump() + ")");
  const uint64_t u64_max = std::numeric_limits<uint64_t>::max();
  e.begin = get_uint(off[0], u64_max, source, where + ": data_offsets begin");
  e.end = get_uint(off[1], u64_max, source, where + ": data_offsets end");
  if (e.begin > e.end)
    fail(source, where + ": data_offsets begin " + std::to_string(e.begin) + " > end " + std::to_string(e.end));
  if (e.end > data_size)
    fail(source, where + ": data_offsets end " + std::to_string(e.end) + " is out of range (past the end of the " +
                     std::to_string(data_size) + "-byte data section)");
  if (e.end - e.begin != nbytes)
    fail(source, where + ": size mismatch: data_offsets span " + std::to_string(e.end - e.begin) +
                     " bytes but shape " + sh.dump() + " x " + e.dtype->name + " needs " + std::to_string(nbytes));
  return e;
}

// Validates "__metadata__" into `out`.
void parse_metadata(const json& v, Metadata& out, const std::string& source) {
  if (!v.is_object()) fail(source, std::string("__metadata__ is not a JSON object (got ") + v.type_name() + ")");
  for (const auto& item : v.items()) {
    if (!item.value().is_string())
      fail(source, "__metadata__ value for key '" + item.key() + "' is not a string (got " +
                       item.value().type_name() + ")");
    out[item.key()] = item.value().get<std::string>();
  }
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void append_u64_le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

namespace {

// Steps 2-4 of the reader: the header JSON, every entry and the overlap check, for a header of
// `header_len` bytes at `header_begin` followed by a data section of `data_size` bytes. Fills
// `metadata`; returns the validated entries (nothing is allocated for tensor data).
std::vector<Entry> parse_header(const char* header_begin, uint64_t header_len, uint64_t data_size,
                                const std::string& source, Metadata& metadata) {
  // 2. Header JSON.
  const json header = parse_header_json(header_begin, header_begin + header_len, source);
  if (!header.is_object()) fail(source, std::string("header is not a JSON object (got ") + header.type_name() + ")");

  // 3. Validate every entry before creating any tensor.
  std::vector<Entry> entries;
  entries.reserve(header.size());
  for (const auto& item : header.items()) {
    if (item.key() == kMetadataKey)
      parse_metadata(item.value(), metadata, source);
    else
      entries.push_back(parse_entry(item.key(), item.value(), data_size, source));
  }

  // 4. Overlaps: sort non-empty spans by begin; each must start at or after
  //    the furthest end seen so far.
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  const Entry* furthest = nullptr;
  for (const Entry* e : by_offset) {
    if (furthest && e->begin < furthest->end)
      fail(source, "tensors '" + furthest->name + "' [" + std::to_string(furthest->begin) + ", " +
                       std::to_string(furthest->end) + ") and '" + e->name + "' [" + std::to_string(e->begin) +
                       ", " + std::to_string(e->end) + ") overlap");
    if (!furthest || e->end > furthest->end) furthest = e;
  }
  return entries;
}

// Step 1: the header length, validated against the limit and the bytes available after the
// length field before anything is allocated.
uint64_t checked_header_length(const char* first8, uint64_t available, const std::string& source) {
  const uint64_t header_len = read_u64_le(first8);
  if (header_len > kMaxHeaderBytes)
    fail(source, "header length " + std::to_string(header_len) + " is too large (limit " +
                     std::to_string(kMaxHeaderBytes) + " bytes); corrupt file?");
  if (header_len > available)
    fail(source, "truncated: header length " + std::to_string(header_len) + " runs past the end of the file (" +
                     std::to_string(available) + " bytes follow the length field)");
  return header_len;
}

}  // namespace

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& source) {
  // 1. Header length.
  if (bytes.size() < 8)
    fail(source, "truncated: file has " + std::to_string(bytes.size()) +
                     " bytes, fewer than the 8-byte header length field");
  const uint64_t available = bytes.size() - 8;
  const uint64_t header_len = checked_header_length(bytes.data(), available, source);
  const char* header_begin = bytes.data() + 8;
  const char* data = header_begin + header_len;
  const uint64_t data_size = available - header_len;

  // 2-4. Header, entries, overlaps.
  SafetensorsFile result;
  const std::vector<Entry> entries = parse_header(header_begin, header_len, data_size, source, result.metadata);

  // 5. Materialize: each tensor gets its own CPU buffer (the source bytes may
  //    be unaligned and are not kept alive).
  for (const auto& e : entries) {
    torch::Tensor t;
    try {
      t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->type).device(torch::kCPU));
    } catch (const c10::Error& err) {
      fail(source, "tensor '" + e.name + "': cannot create tensor: " + err.what_without_backtrace());
    }
    const uint64_t nbytes = e.end - e.begin;
    if (nbytes != t.nbytes())  // cannot happen after validation; keeps memcpy in bounds regardless
      fail(source, "tensor '" + e.name + "': internal size mismatch");
    if (nbytes > 0) std::memcpy(t.data_ptr(), data + e.begin, nbytes);
    result.tensors.emplace(e.name, std::move(t));
  }
  return result;
}

std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata) {
  // Bring every tensor to contiguous CPU memory first (std::map iterates in
  // sorted name order, which fixes the data layout).
  struct Prepared {
    torch::Tensor cpu;
    uint64_t nbytes;
  };
  std::vector<Prepared> prepared;
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const std::string where = "serialize_safetensors: tensor '" + name + "'";
    if (name == kMetadataKey) throw std::invalid_argument(where + ": name is reserved for metadata");
    if (!tensor.defined()) throw std::invalid_argument(where + " is undefined");
    if (tensor.layout() != torch::kStrided) throw std::invalid_argument(where + " is not a dense (strided) tensor");
    const DtypeInfo* dt = dtype_by_type(tensor.scalar_type());
    if (!dt)
      throw std::invalid_argument(where + " has unsupported dtype " + std::string(c10::toString(tensor.scalar_type())) +
                                  " (supported: " + supported_dtypes() + ")");
    torch::Tensor cpu = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(cpu.numel()) * dt->size;
    header[name] = {{"dtype", dt->name}, {"shape", cpu.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    prepared.push_back({std::move(cpu), nbytes});
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;

  std::string header_text;
  try {
    header_text = header.dump();  // strict UTF-8 handling: throws on invalid UTF-8
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("serialize_safetensors: tensor names and metadata must be valid UTF-8: ") +
                                e.what());
  }
  // Pad with spaces (valid JSON whitespace) so that the data section starts at
  // a multiple of 8 bytes.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + header_text.size() + offset);
  append_u64_le(out, header_text.size());
  out += header_text;
  for (const auto& p : prepared)
    if (p.nbytes > 0) out.append(static_cast<const char*>(p.cpu.data_ptr()), p.nbytes);
  return out;
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

SafetensorsFile load_safetensors(const std::string& path) { return parse_safetensors(read_file(path), path); }

SafetensorsHeader read_safetensors_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto end = in.tellg();
  if (end < 0) throw std::runtime_error(path + ": cannot determine the file size");
  const auto file_size = static_cast<uint64_t>(end);
  in.seekg(0, std::ios::beg);
  if (file_size < 8)
    fail(path, "truncated: file has " + std::to_string(file_size) + " bytes, fewer than the 8-byte header length field");
  char first8[8];
  if (!in.read(first8, 8)) throw std::runtime_error(path + ": read error");
  const uint64_t header_len = checked_header_length(first8, file_size - 8, path);
  std::string header(header_len, '\0');
  if (header_len > 0 && !in.read(header.data(), static_cast<std::streamsize>(header_len)))
    throw std::runtime_error(path + ": read error in the header");
  SafetensorsHeader out;
  out.data_offset = 8 + header_len;
  for (Entry& e : parse_header(header.data(), header_len, file_size - 8 - header_len, path, out.metadata))
    out.tensors.emplace(e.name, SafetensorsHeader::Entry{e.dtype->type, std::move(e.shape), e.begin, e.end});
  return out;
}

}  // namespace arcflow::io

// libFuzzer harness: parse_safetensors on arbitrary bytes. Malformed input must throw
// io::FormatError (never another exception, never a crash or an allocation the input does not
// pay for); accepted input must serialize and parse back to the same tensors and metadata.
#include <c10/util/Exception.h>

#include "arcflow/io/safetensors.h"
#include "fuzz_util.h"

using arcflow::fuzz::violation;
namespace io = arcflow::io;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  io::SafetensorsFile f;
  try {
    f = io::parse_safetensors(bytes, "input");
  } catch (const io::FormatError& e) {
    if (std::string(e.what()).rfind("input: ", 0) != 0) violation(std::string("error without the source name: ") + e.what());
    return 0;
  } catch (const c10::Error& e) {
    violation(std::string("torch error escaped: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    violation(std::string("not a FormatError: ") + e.what());
  }
  io::SafetensorsFile back;
  try {
    back = io::parse_safetensors(io::serialize_safetensors(f.tensors, f.metadata), "round trip");
  } catch (const std::exception& e) {
    violation(std::string("accepted file does not round-trip: ") + e.what());
  }
  if (back.metadata != f.metadata) violation("metadata changed in a round trip");
  if (back.tensors.size() != f.tensors.size()) violation("tensor count changed in a round trip");
  for (const auto& [name, t] : f.tensors) {
    const auto it = back.tensors.find(name);
    if (it == back.tensors.end()) violation("tensor '" + name + "' lost in a round trip");
    if (it->second.scalar_type() != t.scalar_type() || it->second.sizes() != t.sizes())
      violation("tensor '" + name + "' changed dtype or shape in a round trip");
    // Bytes, not values: NaN payloads must survive too.
    const auto a = t.contiguous(), b = it->second.contiguous();
    if (a.nbytes() > 0 && std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) != 0) violation("tensor '" + name + "' changed bytes");
  }
  return 0;
}

void arcflow::fuzz::write_seeds(const std::string& dir) {
  write_seed(dir, "empty.safetensors", io::serialize_safetensors({}));
  write_seed(dir, "one.safetensors",
             io::serialize_safetensors({{"w", torch::arange(6, torch::kFloat32).reshape({2, 3})}}, {{"step", "10"}}));
  write_seed(dir, "dtypes.safetensors",
             io::serialize_safetensors({{"a", torch::ones({3}, torch::kFloat64)},
                                        {"b", torch::ones({2, 2}, torch::kFloat16)},
                                        {"c", torch::ones({1}, torch::kBFloat16)},
                                        {"d", torch::arange(4, torch::kInt64)},
                                        {"e", torch::arange(3, torch::kInt32)},
                                        {"f", torch::arange(5, torch::kUInt8)},
                                        {"scalar", torch::tensor(1.5f)},
                                        {"zero", torch::empty({0, 4})}},
                                       {{"model", "dit"}, {"config", "{\"x\": 1}"}}));
}

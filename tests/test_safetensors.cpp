// Tests for arcflow/io/safetensors.h and arcflow/io/atomic_file.h.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "temp_dir.h"
#include <nlohmann/json.hpp>
#include <stdlib.h>
#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <thread>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/safetensors.h"

using namespace arcflow::io;

namespace {

using arcflow::test::TempDir;

std::string bytes_of(std::initializer_list<unsigned> values) {
  std::string s;
  for (unsigned v : values) s.push_back(static_cast<char>(v));
  return s;
}

// Builds file bytes by hand (independently of the writer): 8-byte
// little-endian length, the header text as given, `data_size` zero bytes.
std::string make_file(const std::string& header, size_t data_size = 0, uint64_t length = UINT64_MAX) {
  if (length == UINT64_MAX) length = header.size();
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  return s + header + std::string(data_size, '\0');
}

// One-tensor header: {"w": {"dtype": dtype, "shape": shape, "data_offsets": offsets}}.
std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"w":{"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
}

const std::string kSource = "bad_weights.safetensors";

// Passes iff parsing `bytes` throws FormatError whose message starts with
// kSource and contains every one of `words`.
::testing::AssertionResult FailsWith(const std::string& bytes, std::initializer_list<std::string> words) {
  try {
    parse_safetensors(bytes, kSource);
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    if (msg.rfind(kSource + ": ", 0) != 0) return ::testing::AssertionFailure() << "no source prefix: " << msg;
    for (const auto& w : words)
      if (msg.find(w) == std::string::npos) return ::testing::AssertionFailure() << "'" << w << "' missing: " << msg;
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "not a FormatError: " << e.what();
  }
  return ::testing::AssertionFailure() << "parsed without error";
}

// The what() of the E thrown by f(), or "<no exception>".
template <class E, class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}
bool contains(const std::string& text, const std::string& word) { return text.find(word) != std::string::npos; }

// Same dtype, same shape, same bytes (so NaN payloads and -0.0 count).
bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ca = a.cpu().contiguous(), cb = b.cpu().contiguous();
  return ca.nbytes() == cb.nbytes() && (ca.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0);
}

}  // namespace

// (1) Hand-written byte fixture; BF16/F16/U8 values and the 2-byte gap at
// [22, 24) (tolerated by the reader) are written out literally.
TEST(SafetensorsFixture, ParsesHandWrittenBytes) {
  const std::string header =
      R"({"__metadata__":{"format":"pt","step":"7"},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},)"
      R"("h":{"dtype":"F16","shape":[1],"data_offsets":[20,22]},)"
      R"("n":{"dtype":"I32","shape":[],"data_offsets":[24,28]},)"
      R"("u":{"dtype":"U8","shape":[3,0],"data_offsets":[28,28]},)"
      R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  ASSERT_EQ(header.size(), 0x140u);  // the length bytes below say 0x140 = 320
  const std::string bytes = bytes_of({0x40, 0x01, 0, 0, 0, 0, 0, 0}) + header +
                            bytes_of({0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC0,    // w: 1.0, -2.5
                                      0x00, 0x00, 0x00, 0x3F, 0x00, 0x00, 0x40, 0x40,    //    0.5, 3.0
                                      0xC0, 0x3F, 0x80, 0xBE,                            // b: 1.5, -0.25
                                      0x00, 0xC0,                                        // h: -2.0
                                      0xAA, 0xAA,                                        // (gap)
                                      0xF9, 0xFF, 0xFF, 0xFF});                          // n: -7
  const SafetensorsFile f = parse_safetensors(bytes, "fixture");
  ASSERT_EQ(f.tensors.size(), 5u);
  EXPECT_EQ(f.metadata, (Metadata{{"format", "pt"}, {"step", "7"}}));

  // Values read back as float (exact for all of them); shapes and dtypes.
  auto values = [&](const char* name) {
    const auto t = f.tensors.at(name).to(torch::kFloat32).flatten();
    return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  };
  auto shape = [&](const char* name) { return f.tensors.at(name).sizes().vec(); };
  EXPECT_EQ(f.tensors.at("w").scalar_type(), torch::kFloat32);
  EXPECT_EQ(shape("w"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(values("w"), (std::vector<float>{1.0f, -2.5f, 0.5f, 3.0f}));
  EXPECT_EQ(f.tensors.at("b").scalar_type(), torch::kBFloat16);
  EXPECT_EQ(shape("b"), (std::vector<int64_t>{2}));
  EXPECT_EQ(values("b"), (std::vector<float>{1.5f, -0.25f}));
  EXPECT_EQ(f.tensors.at("h").scalar_type(), torch::kFloat16);
  EXPECT_EQ(shape("h"), (std::vector<int64_t>{1}));
  EXPECT_EQ(values("h"), (std::vector<float>{-2.0f}));
  EXPECT_EQ(f.tensors.at("n").scalar_type(), torch::kInt32);
  EXPECT_EQ(shape("n"), (std::vector<int64_t>{}));  // 0-d
  EXPECT_EQ(f.tensors.at("n").item<int32_t>(), -7);
  EXPECT_EQ(f.tensors.at("u").scalar_type(), torch::kUInt8);
  EXPECT_EQ(shape("u"), (std::vector<int64_t>{3, 0}));
}

// (2) Every dtype, 0-d, zero-size and non-contiguous inputs, through disk.
TEST(SafetensorsRoundTrip, EveryDtypeIsBitwiseEqual) {
  torch::manual_seed(0);
  auto f64 = torch::randn({3, 4}, torch::kFloat64);
  f64[0][0] = std::numeric_limits<double>::quiet_NaN();
  f64[0][1] = -0.0;
  f64[0][2] = -std::numeric_limits<double>::infinity();
  auto u8 = torch::arange(0, 256, torch::kInt64).to(torch::kUInt8).reshape({16, 16});
  const TensorMap in = {
      {"f64", f64},
      {"f32", torch::randn({5}, torch::kFloat32)},
      {"f16", torch::randn({2, 3}).to(torch::kFloat16)},
      {"bf16", torch::randn({7}).to(torch::kBFloat16)},
      {"i64", torch::tensor({std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0},
                             std::numeric_limits<int64_t>::max()})},
      {"i32", torch::randint(-1000000, 1000000, {3, 2}, torch::kInt32)},
      {"u8", u8},
      {"scalar_f64", torch::scalar_tensor(3.25, torch::kFloat64)},
      {"scalar_i32", torch::scalar_tensor(-5, torch::kInt32)},
      {"empty_f32", torch::empty({0, 3}, torch::kFloat32)},
      {"empty_i64", torch::empty({2, 0, 5}, torch::kInt64)},
      {"transposed", torch::randn({4, 6}).t()},                                 // strides (1, 6)
      {"strided", torch::arange(40, torch::kInt32).reshape({4, 10}).slice(1, 1, 9, 3)},  // offset + step
      {"expanded", torch::randn({1, 3}, torch::kFloat64).expand({4, 3})},      // stride 0
      {"u8_flipped", u8.flip(0).t()},
  };
  ASSERT_FALSE(in.at("transposed").is_contiguous());
  ASSERT_FALSE(in.at("strided").is_contiguous());
  const Metadata meta = {{"epoch", "12"}, {"empty", ""}, {"unicode", "\xC3\xA9t\xC3\xA9 \xE2\x9C\x93"}};

  TempDir dir;
  const std::string path = dir.file("all.safetensors");
  save_safetensors(path, in, meta);
  const SafetensorsFile out = load_safetensors(path);

  EXPECT_EQ(out.metadata, meta);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_EQ(out.tensors.count(name), 1u) << name;
    const auto& r = out.tensors.at(name);
    EXPECT_TRUE(bitwise_equal(t, r)) << name;
    EXPECT_TRUE(r.device().is_cpu()) << name;
    EXPECT_TRUE(r.is_contiguous()) << name;
    // Owns exactly its own bytes: not a view into a shared file buffer.
    EXPECT_EQ(r.storage().nbytes(), r.nbytes()) << name;
  }
  EXPECT_EQ(out.tensors.at("scalar_i32").dim(), 0);
  EXPECT_EQ(out.tensors.at("scalar_f64").item<double>(), 3.25);
  EXPECT_TRUE(std::isnan(out.tensors.at("f64")[0][0].item<double>()));
  EXPECT_TRUE(std::signbit(out.tensors.at("f64")[0][1].item<double>()));
  EXPECT_EQ(out.tensors.at("strided")[1][2].item<int32_t>(), 17);  // row 1, column 1 + 2*3
  EXPECT_EQ(out.tensors.at("u8")[15][15].item<uint8_t>(), 255);
}

TEST(SafetensorsRoundTrip, EmptyMapAndCudaInput) {
  const SafetensorsFile empty = parse_safetensors(serialize_safetensors({}), "empty");
  EXPECT_TRUE(empty.tensors.empty());
  EXPECT_TRUE(empty.metadata.empty());
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device; CPU part passed";
  const auto t = torch::randn({3, 5}, torch::kFloat32).to(torch::kCUDA).t();
  const auto back = parse_safetensors(serialize_safetensors({{"g", t}}), "cuda").tensors.at("g");
  EXPECT_TRUE(back.device().is_cpu());
  EXPECT_TRUE(bitwise_equal(t.cpu(), back));
}

TEST(SafetensorsWriter, RejectsUnsupportedInput) {
  auto message_of = [](const TensorMap& m) {
    return error_of<std::invalid_argument>([&] { serialize_safetensors(m); });
  };
  const std::string bool_msg = message_of({{"mask", torch::ones({2}, torch::kBool)}});
  EXPECT_TRUE(contains(bool_msg, "'mask'") && contains(bool_msg, "unsupported dtype")) << bool_msg;
  EXPECT_TRUE(contains(message_of({{"c", torch::ones({2}, torch::kComplexFloat)}}), "'c'"));
  EXPECT_TRUE(contains(message_of({{"__metadata__", torch::ones({1})}}), "reserved"));
  EXPECT_TRUE(contains(message_of({{"undef", torch::Tensor()}}), "'undef'"));
}

// (3) Writer layout checked independently of the reader.
TEST(SafetensorsWriter, LayoutIsAlignedAndContiguous) {
  const std::vector<float> bvals = {1.0f, 2.0f, 3.0f};
  const TensorMap in = {{"b", torch::tensor(bvals)},
                        {"a", torch::tensor({int64_t{10}, int64_t{20}})},
                        {"c", torch::zeros({5}, torch::kUInt8)}};
  const std::string bytes = serialize_safetensors(in, {{"k", "v"}});

  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  ASSERT_LE(8 + n, bytes.size());
  EXPECT_EQ((8 + n) % 8, 0u);
  const std::string text = bytes.substr(8, n);
  const size_t last = text.find_last_not_of(' ');
  ASSERT_NE(last, std::string::npos);
  EXPECT_EQ(text[last], '}');
  EXPECT_LT(text.size() - 1 - last, 8u);  // at most 7 spaces of padding

  const auto header = nlohmann::json::parse(text);
  EXPECT_EQ(header["__metadata__"], nlohmann::json({{"k", "v"}}));
  const uint64_t data_size = bytes.size() - 8 - n;
  EXPECT_EQ(data_size, 2 * 8 + 3 * 4 + 5 * 1u);
  // Sorted name order, contiguous offsets from 0 to the end of the data.
  const std::vector<std::tuple<std::string, std::string, std::vector<int64_t>, uint64_t>> expected = {
      {"a", "I64", {2}, 16}, {"b", "F32", {3}, 12}, {"c", "U8", {5}, 5}};
  uint64_t offset = 0;
  for (const auto& [name, dtype, shape, size] : expected) {
    const auto& e = header.at(name);
    EXPECT_EQ(e.at("dtype"), dtype) << name;
    EXPECT_EQ(e.at("shape").get<std::vector<int64_t>>(), shape) << name;
    EXPECT_EQ(e.at("data_offsets").get<std::vector<uint64_t>>(), (std::vector<uint64_t>{offset, offset + size}))
        << name;
    offset += size;
  }
  EXPECT_EQ(offset, data_size);
  EXPECT_EQ(header.size(), 4u);
  // Raw data of "b" is the little-endian floats themselves.
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + n + 16, bvals.data(), 12), 0);
  // save_safetensors writes exactly these bytes.
  TempDir dir;
  save_safetensors(dir.file("x.safetensors"), in, {{"k", "v"}});
  EXPECT_EQ(read_file(dir.file("x.safetensors")), bytes);
}

// (4) Malformed input: one test per case.
TEST(SafetensorsMalformed, ShorterThanEightBytes) {
  EXPECT_TRUE(FailsWith("", {"truncated"}));
  EXPECT_TRUE(FailsWith(bytes_of({1, 0, 0, 0, 0}), {"truncated"}));
}
TEST(SafetensorsMalformed, HeaderLengthPastEndOfFile) {
  EXPECT_TRUE(FailsWith(make_file("{}", 0, 100), {"header length 100", "past the end"}));
}
TEST(SafetensorsMalformed, HeaderLengthAbsurdlyLarge) {
  EXPECT_TRUE(FailsWith(make_file("{}", 0, UINT64_MAX - 1), {"header length", "too large"}));
  EXPECT_TRUE(FailsWith(make_file("{}", 0, uint64_t{1} << 63), {"too large"}));
}
TEST(SafetensorsMalformed, InvalidJson) {
  EXPECT_TRUE(FailsWith(make_file(R"({"w": {"dtype": )"), {"invalid JSON"}));
  EXPECT_TRUE(FailsWith(make_file("{\"\xff\": 1}"), {"invalid JSON"}));  // not UTF-8
}
TEST(SafetensorsMalformed, HeaderNotAnObject) {
  EXPECT_TRUE(FailsWith(make_file("[1, 2]"), {"not a JSON object"}));
}
TEST(SafetensorsMalformed, EntryMissingDtype) {
  EXPECT_TRUE(FailsWith(make_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), {"'w'", "missing", "dtype"}));
}
TEST(SafetensorsMalformed, EntryMissingShape) {
  EXPECT_TRUE(FailsWith(make_file(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), {"'w'", "missing", "shape"}));
}
TEST(SafetensorsMalformed, EntryMissingDataOffsets) {
  EXPECT_TRUE(FailsWith(make_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4), {"'w'", "missing", "data_offsets"}));
}
TEST(SafetensorsMalformed, EntryWrongJsonTypes) {
  EXPECT_TRUE(FailsWith(make_file(R"({"w": 3})"), {"'w'", "not a JSON object"}));
  EXPECT_TRUE(FailsWith(make_file(entry("5", "[1]", "[0,4]"), 4), {"'w'", "dtype", "not a string"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "\"1\"", "[0,4]"), 4), {"'w'", "shape", "not an array"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[1]", "[0]"), 4), {"'w'", "data_offsets"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[1]", "{}"), 4), {"'w'", "data_offsets"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[1]", "[0,\"4\"]"), 4), {"'w'", "not an integer"}));
}
TEST(SafetensorsMalformed, UnknownField) {
  EXPECT_TRUE(FailsWith(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4),
                        {"'w'", "unknown field 'x'"}));
}
TEST(SafetensorsMalformed, UnknownDtype) {
  EXPECT_TRUE(FailsWith(make_file(entry("\"F8\"", "[1]", "[0,1]"), 1), {"'w'", "unknown dtype 'F8'"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"f32\"", "[1]", "[0,4]"), 4), {"unknown dtype"}));
}
TEST(SafetensorsMalformed, NegativeShapeDim) {
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[2,-1]", "[0,4]"), 4), {"'w'", "dimension 1", "negative"}));
}
TEST(SafetensorsMalformed, NonIntegerShapeDim) {
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[2.5]", "[0,8]"), 8), {"'w'", "not an integer"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[true]", "[0,4]"), 4), {"not an integer"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[1e30]", "[0,4]"), 4), {"not an integer"}));
}
TEST(SafetensorsMalformed, NegativeOffset) {
  EXPECT_TRUE(FailsWith(make_file(entry("\"U8\"", "[1]", "[-1,0]"), 4), {"'w'", "begin", "negative"}));
}
TEST(SafetensorsMalformed, OffsetsPastDataSection) {
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[2]", "[0,8]"), 4), {"'w'", "out of range"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"U8\"", "[0]", "[99,99]"), 4), {"'w'", "out of range"}));
}
TEST(SafetensorsMalformed, BeginAfterEnd) {
  EXPECT_TRUE(FailsWith(make_file(entry("\"U8\"", "[0]", "[4,0]"), 4), {"'w'", "begin 4 > end 0"}));
}
TEST(SafetensorsMalformed, OverlappingTensors) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_TRUE(FailsWith(make_file(h, 12), {"'a'", "'b'", "overlap"}));
  const std::string same = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"I32","shape":[],"data_offsets":[0,4]}})";
  EXPECT_TRUE(FailsWith(make_file(same, 4), {"overlap"}));
}
TEST(SafetensorsMalformed, ShapeTimesDtypeSizeMismatch) {
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[3]", "[0,8]"), 8), {"'w'", "size mismatch", "needs 12"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"F64\"", "[]", "[0,4]"), 8), {"'w'", "size mismatch"}));
}
TEST(SafetensorsMalformed, ShapeProductOverflow) {
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[4294967296,4294967296]", "[0,4]"), 4), {"'w'", "overflow"}));
  // Element count fits in int64 but the byte count does not.
  EXPECT_TRUE(FailsWith(make_file(entry("\"F32\"", "[4611686018427387904]", "[0,4]"), 4), {"overflow"}));
  // Zero elements, but torch's contiguous strides would still overflow.
  EXPECT_TRUE(FailsWith(make_file(entry("\"U8\"", "[0,4294967296,4294967296]", "[0,0]")), {"overflow"}));
  EXPECT_TRUE(FailsWith(make_file(entry("\"U8\"", "[18446744073709551615]", "[0,0]")), {"too large"}));
}
TEST(SafetensorsMalformed, MetadataValueNotString) {
  EXPECT_TRUE(FailsWith(make_file(R"({"__metadata__":{"ok":"x","step":7}})"), {"__metadata__", "'step'", "not a string"}));
  EXPECT_TRUE(FailsWith(make_file(R"({"__metadata__":["x"]})"), {"__metadata__", "not a JSON object"}));
}
TEST(SafetensorsMalformed, DuplicateKey) {
  const std::string h = R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                        R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
  EXPECT_TRUE(FailsWith(make_file(h, 2), {"duplicate key 'w'"}));
}
TEST(SafetensorsMalformed, DeeplyNestedJson) {
  EXPECT_TRUE(FailsWith(make_file(R"({"__metadata__":)" + std::string(100000, '[') + std::string(100000, ']') + "}"),
                        {"nested"}));
}
TEST(SafetensorsMalformed, LoadFromDiskNamesThePath) {
  TempDir dir;
  const std::string path = dir.file("broken.safetensors");
  write_file_atomic(path, make_file("{\"w\":", 0));
  const std::string msg = error_of<FormatError>([&] { load_safetensors(path); });
  EXPECT_EQ(msg.rfind(path + ": invalid JSON", 0), 0u) << msg;
  EXPECT_THROW(load_safetensors(dir.file("missing.safetensors")), std::runtime_error);
}
// Every truncation and every single-byte corruption of a valid file must
// either parse or throw FormatError: never crash, never another exception.
TEST(SafetensorsMalformed, TruncationsAndByteFlipsNeverCrash) {
  const std::string good = serialize_safetensors(
      {{"a", torch::arange(6, torch::kFloat32).reshape({2, 3})}, {"b", torch::scalar_tensor(1, torch::kInt64)}},
      {{"m", "v"}});
  for (size_t len = 0; len < good.size(); ++len) {
    try {
      parse_safetensors(good.substr(0, len), "t");
      ADD_FAILURE() << "truncation to " << len << " bytes parsed";
    } catch (const FormatError&) {
    }
  }
  for (size_t i = 0; i < good.size(); ++i)
    for (unsigned char x : {0x01, 0x20, 0x80, 0xFF}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ x);
      try {
        parse_safetensors(bad, "f");
      } catch (const FormatError&) {
      }
    }
}

// (5) Atomic file writes.
TEST(SafetensorsAtomicFile, OverwriteReplacesContentsWithoutTempFiles) {
  TempDir dir;
  const std::string path = dir.file("f.bin");
  write_file_atomic(path, "old contents");
  EXPECT_EQ(read_file(path), "old contents");
  const std::string binary("new\0contents\xff", 13);
  write_file_atomic(path, binary);
  EXPECT_EQ(read_file(path), binary);
  EXPECT_EQ(dir.names(), (std::set<std::string>{"f.bin"}));
}
TEST(SafetensorsAtomicFile, ConcurrentReaderSeesOldOrNewOnly) {
  TempDir dir;
  const std::string path = dir.file("f.bin");
  const std::string a(1 << 20, 'a'), b(3 << 19, 'b');
  write_file_atomic(path, a);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 20; ++i) write_file_atomic(path, i % 2 ? a : b);
    done = true;
  });
  int reads = 0, torn = 0;
  while (!done || reads == 0) {
    const std::string got = read_file(path);
    ++reads;
    if (got != a && got != b) ++torn;
  }
  writer.join();
  EXPECT_EQ(torn, 0) << "of " << reads << " reads";
  EXPECT_EQ(read_file(path), a);
  EXPECT_EQ(dir.names(), (std::set<std::string>{"f.bin"}));
}
TEST(SafetensorsAtomicFile, MissingFolderThrowsNamingPath) {
  TempDir dir;
  const std::string path = dir.file("no_such_dir/f.bin");
  const std::string msg = error_of<std::runtime_error>([&] { write_file_atomic(path, "x"); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, std::strerror(ENOENT))) << msg;
  EXPECT_TRUE(dir.names().empty());
  EXPECT_THROW(save_safetensors(path, {{"w", torch::ones({1})}}), std::runtime_error);
  const std::string read_msg = error_of<std::runtime_error>([&] { read_file(dir.file("absent.bin")); });
  EXPECT_TRUE(contains(read_msg, dir.file("absent.bin")) && contains(read_msg, std::strerror(ENOENT))) << read_msg;
}
TEST(SafetensorsAtomicFile, FailedRenameRemovesTempFile) {
  TempDir dir;
  const std::string path = dir.file("target");
  ::mkdir(path.c_str(), 0755);  // rename() of a file over a folder fails
  const std::string msg = error_of<std::runtime_error>([&] { write_file_atomic(path, "x"); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "rename")) << msg;
  EXPECT_EQ(dir.names(), (std::set<std::string>{"target"}));
}

TEST(FileKinds, RegularFileAndDirectoryFollowLinks) {
  TempDir dir;
  write_file_atomic(dir.file("f"), "x");
  ::mkdir(dir.file("d").c_str(), 0755);
  ASSERT_EQ(::symlink(dir.file("f").c_str(), dir.file("link").c_str()), 0);
  ASSERT_EQ(::symlink(dir.file("gone").c_str(), dir.file("dangling").c_str()), 0);
  EXPECT_TRUE(arcflow::io::is_regular_file(dir.file("f")));
  EXPECT_TRUE(arcflow::io::is_regular_file(dir.file("link")));
  EXPECT_FALSE(arcflow::io::is_regular_file(dir.file("d")));
  EXPECT_FALSE(arcflow::io::is_regular_file(dir.file("dangling")));
  EXPECT_FALSE(arcflow::io::is_regular_file(dir.file("absent")));
  EXPECT_TRUE(arcflow::io::is_directory(dir.file("d")));
  EXPECT_FALSE(arcflow::io::is_directory(dir.file("f")));
  EXPECT_FALSE(arcflow::io::is_directory(dir.file("absent")));
}

TEST(OutputDir, CreatesParentsAndRejectsFiles) {
  TempDir dir;
  const std::string nested = dir.file("a/b/c");
  arcflow::io::make_output_dir(nested);
  struct stat st {};
  ASSERT_EQ(::stat(nested.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(dir.names(), (std::set<std::string>{"a"}));
  arcflow::io::make_output_dir(nested);  // existing folder: fine
  arcflow::io::write_file_atomic(dir.file("plain"), "x");
  try {
    arcflow::io::make_output_dir(dir.file("plain/sub"));
    ADD_FAILURE() << "no error for a path through a file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("plain"), std::string::npos) << e.what();
  }
}

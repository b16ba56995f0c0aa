// PNG encoding/decoding with libpng.
//
// libpng reports errors by longjmp-ing back to a setjmp point. In C++ a
// longjmp is only well defined when it skips no frame holding objects with
// non-trivial destructors, so every libpng call that can fail runs inside a
// small "stage" function whose locals are all trivial. A stage returns false
// after an error; the caller (which owns the buffers and the RAII guard that
// destroys the libpng structs) turns that into a C++ exception. libpng's
// error callback copies the message into a plain char buffer and longjmps;
// our I/O callbacks never let a C++ exception escape into libpng.
#include "arcflow/io/png.h"

#include "arcflow/io/atomic_file.h"

#include <png.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace arcflow::io {
namespace {

// Decoded images above this many bytes are rejected before allocation, so a
// corrupt header cannot make us allocate gigabytes.
constexpr uint64_t kMaxDecodedBytes = uint64_t{1} << 30;  // 1 GiB
constexpr uint32_t kMaxDimension = 1u << 20;               // pixels per side

// ---------------------------------------------------------------------------
// libpng error plumbing
// ---------------------------------------------------------------------------

// Where the error callback leaves libpng's message (trivially destructible).
struct ErrorState {
  char message[256] = "unknown libpng error";
};

[[noreturn]] void on_png_error(png_structp png, png_const_charp msg) {
  auto* state = static_cast<ErrorState*>(png_get_error_ptr(png));
  if (state != nullptr) std::snprintf(state->message, sizeof(state->message), "%s", msg ? msg : "?");
  png_longjmp(png, 1);
}

// Warnings (e.g. a bad CRC in an ancillary chunk that libpng skips) are not
// fatal; stay quiet instead of printing to stderr.
void on_png_warning(png_structp, png_const_charp) {}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

// libpng write callback: append to the std::string given as io pointer.
void write_to_string(png_structp png, png_bytep data, size_t length) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    out->append(reinterpret_cast<const char*>(data), length);
  } catch (...) {
    ok = false;  // never throw through libpng; report after leaving the handler
  }
  if (!ok) png_error(png, "out of memory while encoding");
}

void flush_nothing(png_structp) {}

// Owns the libpng write structs for the duration of one encode.
struct WriteGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~WriteGuard() { png_destroy_write_struct(&png, info ? &info : nullptr); }
};

// The only frame that libpng may longjmp into while encoding: trivial locals.
bool encode_stage(png_structp png, png_infop info, const Image* img, png_bytep* rows,
                  png_textp texts, int num_texts, std::string* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, write_to_string, flush_nothing);
  const int color_type = img->channels == 1   ? PNG_COLOR_TYPE_GRAY
                         : img->channels == 3 ? PNG_COLOR_TYPE_RGB
                                              : PNG_COLOR_TYPE_RGBA;
  png_set_IHDR(png, info, static_cast<png_uint_32>(img->width),
               static_cast<png_uint_32>(img->height), 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (num_texts > 0) png_set_text(png, info, texts, num_texts);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

// PNG keywords: 1-79 Latin-1 characters from 32-126 / 161-255, no leading,
// trailing or consecutive spaces (PNG spec 11.3.4.3).
void check_keyword(const std::string& key) {
  bool ok = !key.empty() && key.size() <= 79 && key.front() != ' ' && key.back() != ' ';
  for (size_t i = 0; ok && i < key.size(); ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (!((c >= 32 && c <= 126) || c >= 161)) ok = false;
    if (c == ' ' && i > 0 && key[i - 1] == ' ') ok = false;
  }
  if (!ok) throw std::invalid_argument("encode_png: invalid PNG text keyword '" + key + "'");
}

void check_image(const Image& img, const char* who) {
  if (img.width <= 0 || img.height <= 0)
    throw std::invalid_argument(std::string(who) + ": image size must be positive, got " +
                                std::to_string(img.width) + "x" + std::to_string(img.height));
  if (img.channels != 1 && img.channels != 3 && img.channels != 4)
    throw std::invalid_argument(std::string(who) + ": channels must be 1, 3 or 4, got " +
                                std::to_string(img.channels));
  const uint64_t expected =
      uint64_t(img.width) * uint64_t(img.height) * uint64_t(img.channels);
  if (img.pixels.size() != expected)
    throw std::invalid_argument(std::string(who) + ": pixel buffer has " +
                                std::to_string(img.pixels.size()) + " bytes, expected " +
                                std::to_string(expected));
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

// In-memory source for the libpng read callback.
struct MemoryReader {
  const unsigned char* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
};

void read_from_memory(png_structp png, png_bytep out, size_t length) {
  auto* src = static_cast<MemoryReader*>(png_get_io_ptr(png));
  if (length > src->size - src->pos) png_error(png, "unexpected end of data (truncated PNG)");
  std::memcpy(out, src->data + src->pos, length);
  src->pos += length;
}

struct ReadGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~ReadGuard() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

// Layout of the decoded image after our transformations.
struct Header {
  png_uint_32 width = 0, height = 0;
  int channels = 0, bit_depth = 0;
  size_t rowbytes = 0;
};

// Stage 1: read the chunks before the image data and set up transforms so
// the output is 8-bit gray, RGB or RGBA.
bool read_header_stage(png_structp png, png_infop info, MemoryReader* src, Header* hdr) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, src, read_from_memory);
  png_set_user_limits(png, kMaxDimension, kMaxDimension);
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  const bool has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (has_trns) png_set_tRNS_to_alpha(png);
  if (bit_depth == 16) png_set_strip_16(png);
  const bool gray = (color_type & PNG_COLOR_MASK_COLOR) == 0;
  const bool alpha = (color_type & PNG_COLOR_MASK_ALPHA) != 0 || has_trns;
  if (gray && alpha) png_set_gray_to_rgb(png);  // gray+alpha has no Image layout: use RGBA
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  hdr->width = png_get_image_width(png, info);
  hdr->height = png_get_image_height(png, info);
  hdr->channels = png_get_channels(png, info);
  hdr->bit_depth = png_get_bit_depth(png, info);
  hdr->rowbytes = png_get_rowbytes(png, info);
  return true;
}

// Stage 2: decode the pixels and the chunks after the image data.
bool read_image_stage(png_structp png, png_infop info, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

[[noreturn]] void decode_error(const std::string& source, const std::string& what) {
  throw std::runtime_error("decode_png: " + source + ": " + what);
}

}  // namespace

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

std::string encode_png(const Image& img, const std::map<std::string, std::string>& text) {
  check_image(img, "encode_png");

  // Everything with a destructor lives here, outside the setjmp frame.
  std::vector<png_text> texts;
  texts.reserve(text.size());
  for (const auto& [key, value] : text) {
    check_keyword(key);
    if (value.find('\0') != std::string::npos)
      throw std::invalid_argument("encode_png: text value for '" + key + "' contains a NUL byte");
    png_text t{};
    t.compression = PNG_TEXT_COMPRESSION_NONE;  // tEXt
    t.key = const_cast<char*>(key.c_str());     // libpng copies the strings
    t.text = const_cast<char*>(value.c_str());
    t.text_length = value.size();
    texts.push_back(t);
  }
  std::vector<png_bytep> rows(static_cast<size_t>(img.height));
  const size_t stride = size_t(img.width) * size_t(img.channels);
  for (size_t r = 0; r < rows.size(); ++r)
    rows[r] = const_cast<png_bytep>(img.pixels.data() + r * stride);  // libpng only reads

  ErrorState err;
  WriteGuard g;
  g.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
  if (g.png == nullptr) throw std::runtime_error("encode_png: png_create_write_struct failed");
  g.info = png_create_info_struct(g.png);
  if (g.info == nullptr) throw std::runtime_error("encode_png: png_create_info_struct failed");

  std::string out;
  out.reserve(stride * rows.size() / 2 + 1024);
  if (!encode_stage(g.png, g.info, &img, rows.data(), texts.data(), static_cast<int>(texts.size()),
                    &out))
    throw std::runtime_error(std::string("encode_png: libpng error: ") + err.message);
  return out;
}

void write_png(const std::string& path, const Image& img,
               const std::map<std::string, std::string>& text) {
  std::string bytes;
  try {
    bytes = encode_png(img, text);
  } catch (const std::exception& e) {
    throw std::runtime_error("write_png: cannot write '" + path + "': " + e.what());
  }
  write_file_atomic(path, bytes);
}

DecodedPng decode_png(const std::string& bytes, const std::string& source_name) {
  // Check the signature ourselves for a clearer message than libpng's.
  if (bytes.size() < 8) decode_error(source_name, "too short to be a PNG (" +
                                                      std::to_string(bytes.size()) + " bytes)");
  if (png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) != 0)
    decode_error(source_name, "not a PNG file (bad signature)");

  ErrorState err;
  ReadGuard g;
  g.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
  if (g.png == nullptr) decode_error(source_name, "png_create_read_struct failed");
  g.info = png_create_info_struct(g.png);
  if (g.info == nullptr) decode_error(source_name, "png_create_info_struct failed");

  MemoryReader src;
  src.data = reinterpret_cast<const unsigned char*>(bytes.data());
  src.size = bytes.size();
  Header hdr;
  if (!read_header_stage(g.png, g.info, &src, &hdr)) decode_error(source_name, err.message);

  if (hdr.bit_depth != 8 || (hdr.channels != 1 && hdr.channels != 3 && hdr.channels != 4))
    decode_error(source_name, "unsupported pixel layout after conversion (" +
                                  std::to_string(hdr.channels) + " channels, " +
                                  std::to_string(hdr.bit_depth) + " bits)");
  const uint64_t row_bytes = uint64_t(hdr.width) * uint64_t(hdr.channels);
  const uint64_t total = row_bytes * uint64_t(hdr.height);
  if (hdr.width == 0 || hdr.height == 0 || hdr.rowbytes != row_bytes)
    decode_error(source_name, "inconsistent image header");
  if (total > kMaxDecodedBytes)
    decode_error(source_name, "image too large (" + std::to_string(hdr.width) + "x" +
                                  std::to_string(hdr.height) + ")");

  DecodedPng result;
  Image& img = result.image;
  img.width = static_cast<int>(hdr.width);
  img.height = static_cast<int>(hdr.height);
  img.channels = hdr.channels;
  img.pixels.resize(static_cast<size_t>(total));
  std::vector<png_bytep> rows(hdr.height);
  for (size_t r = 0; r < rows.size(); ++r) rows[r] = img.pixels.data() + r * row_bytes;

  if (!read_image_stage(g.png, g.info, rows.data())) decode_error(source_name, err.message);

  // Text chunks from before and after the image data (png_read_end stored
  // the latter in the same info struct). Later duplicates win.
  png_textp texts = nullptr;
  int num_texts = 0;
  png_get_text(g.png, g.info, &texts, &num_texts);
  for (int i = 0; i < num_texts; ++i) {
    if (texts[i].key == nullptr) continue;
    result.text[texts[i].key] = texts[i].text ? std::string(texts[i].text) : std::string();
  }
  return result;
}

DecodedPng read_png(const std::string& path) { return decode_png(read_file(path), path); }

}  // namespace arcflow::io

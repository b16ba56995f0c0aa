// PNG encoding/decoding (libpng) for plots, image grids and samples.
//
// This header deliberately depends on nothing but the standard library: an
// Image is a plain byte buffer, so plotting and image-grid code never needs
// torch. Conversions from tensors live with the code that owns the tensors.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace arcflow::io {

// An 8-bit image: row-major, channels interleaved, top row first.
// channels is 1 (gray), 3 (RGB) or 4 (RGBA);
// pixels.size() == width * height * channels.
struct Image {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> pixels;
};

// Encodes `img` as an 8-bit PNG and returns the file bytes. `text` becomes
// tEXt chunks (key -> value), written before the image data, e.g. the
// generation parameters of a sample.
// Throws std::invalid_argument when the image is malformed (non-positive
// size, channels not 1/3/4, pixel buffer of the wrong size) or a key is not a
// valid PNG keyword (1-79 printable Latin-1 characters, no leading/trailing or
// double spaces) or a value contains a NUL byte; std::runtime_error when
// libpng itself fails.
std::string encode_png(const Image& img, const std::map<std::string, std::string>& text = {});

// Encodes and writes `img` to `path` atomically: the bytes go to a temporary
// file in the same folder, which is flushed to disk and then renamed over
// `path`, so readers never see a half-written PNG. Throws std::runtime_error
// naming `path` on any I/O failure (the temporary file is removed).
void write_png(const std::string& path, const Image& img,
               const std::map<std::string, std::string>& text = {});

// A decoded PNG: its pixels plus every text chunk (tEXt, zTXt, iTXt).
struct DecodedPng {
  Image image;
  std::map<std::string, std::string> text;
};

// Decodes PNG file bytes. 8-bit gray, RGB and RGBA decode as-is; other PNG
// flavours are normalised: palette -> RGB(A), gray+alpha -> RGBA, 16-bit ->
// 8-bit, 1/2/4-bit gray -> 8-bit, tRNS -> alpha channel. Interlaced images
// are supported. Throws std::runtime_error whose message contains
// `source_name` when the data is not a PNG, truncated or corrupt, or would
// decode to an absurdly large image (never crashes on bad input).
DecodedPng decode_png(const std::string& bytes, const std::string& source_name);

// Reads and decodes the PNG file at `path`; errors name `path`.
DecodedPng read_png(const std::string& path);

}  // namespace arcflow::io

// Tests for arcflow::io PNG encoding/decoding and the plotting Canvas.
#include <gtest/gtest.h>

#include <set>

#include "temp_dir.h"
#include <png.h>  // libpng's simplified API, used as an independent decoder/encoder

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "arcflow/io/canvas.h"
#include "arcflow/io/png.h"

using namespace arcflow::io;  // NOLINT: test file

namespace {

Image random_image(int w, int h, int channels, unsigned seed) {
  std::mt19937 rng(seed);
  Image img{w, h, channels, std::vector<uint8_t>(size_t(w) * h * channels)};
  for (auto& p : img.pixels) p = static_cast<uint8_t>(rng() & 0xff);
  return img;
}

// Expects `fn` to throw std::runtime_error whose message contains `needle`.
template <typename Fn>
void expect_runtime_error_naming(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected std::runtime_error mentioning '" << needle << "'";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

using arcflow::test::TempDir;
using arcflow::test::path_exists;

// RGB of pixel (col, row) of a 3-channel image.
Color pixel(const Image& img, int col, int row) {
  const uint8_t* p = img.pixels.data() + (size_t(row) * img.width + col) * 3;
  return {p[0], p[1], p[2]};
}
bool is_white(const Image& img, int col, int row) {
  const Color c = pixel(img, col, row);
  return (c.r & c.g & c.b) == 255;
}
int count_non_white(const Image& img) {
  int n = 0;
  for (int r = 0; r < img.height; ++r)
    for (int c = 0; c < img.width; ++c) n += !is_white(img, c, r);
  return n;
}

// Encodes with libpng's own simplified writer (independent of encode_png).
std::string libpng_encode(png_uint_32 format, png_uint_32 w, png_uint_32 h, const void* data) {
  png_image pi{};
  pi.version = PNG_IMAGE_VERSION;
  pi.width = w, pi.height = h, pi.format = format;
  png_alloc_size_t size = 0;
  if (!png_image_write_get_memory_size(pi, size, 0, data, 0, nullptr)) return {};
  std::string bytes(size, '\0');
  if (!png_image_write_to_memory(&pi, bytes.data(), &size, 0, data, 0, nullptr)) return {};
  bytes.resize(size);
  return bytes;
}

constexpr Color kRed{255, 0, 0};
constexpr Color kBlack{0, 0, 0};
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

// ----- PNG ------------------------------------------------------------------

TEST(PngEncode, StartsWithSignature) {
  const std::string bytes = encode_png(random_image(4, 3, 3, 1));
  ASSERT_GE(bytes.size(), 8u);
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  EXPECT_EQ(std::string(bytes, 0, 8), std::string(reinterpret_cast<const char*>(sig), 8));
}

TEST(PngEncode, RoundTripAllChannelCountsAndOddSizes) {
  const int sizes[][2] = {{1, 1}, {7, 5}, {13, 1}, {1, 17}, {33, 21}, {100, 3}};
  unsigned seed = 0;
  for (int channels : {1, 3, 4})
    for (const auto& s : sizes) {
      const Image img = random_image(s[0], s[1], channels, ++seed);
      const auto dec = decode_png(encode_png(img), "mem");
      SCOPED_TRACE(std::to_string(channels) + "ch " + std::to_string(s[0]) + "x" +
                   std::to_string(s[1]));
      EXPECT_EQ(dec.image.width, img.width);
      EXPECT_EQ(dec.image.height, img.height);
      EXPECT_EQ(dec.image.channels, channels);
      EXPECT_EQ(dec.image.pixels, img.pixels);
      EXPECT_TRUE(dec.text.empty());
    }
}

TEST(PngEncode, IndependentLibpngDecoderAgrees) {
  // Decode our bytes with libpng's simplified API instead of decode_png.
  const struct { int channels; png_uint_32 format; } cases[] = {
      {1, PNG_FORMAT_GRAY}, {3, PNG_FORMAT_RGB}, {4, PNG_FORMAT_RGBA}};
  for (const auto& c : cases) {
    const Image img = random_image(9, 7, c.channels, 42 + c.channels);
    const std::string bytes = encode_png(img);
    png_image pi{};
    pi.version = PNG_IMAGE_VERSION;
    ASSERT_TRUE(png_image_begin_read_from_memory(&pi, bytes.data(), bytes.size()));
    pi.format = c.format;
    std::vector<uint8_t> buf(PNG_IMAGE_SIZE(pi));
    ASSERT_TRUE(png_image_finish_read(&pi, nullptr, buf.data(), 0, nullptr)) << pi.message;
    EXPECT_EQ(pi.width, 9u);
    EXPECT_EQ(pi.height, 7u);
    EXPECT_EQ(buf, img.pixels) << "channels " << c.channels;
  }
}

TEST(PngEncode, TextChunksRoundTrip) {
  const std::map<std::string, std::string> text = {
      {"Software", "arcflow"},
      {"parameters", R"({"steps": 4, "seed": 1234, "cfg": 2.5})"},
      {"multi line", "line one\nline two\n"},
      {"empty", ""},
      {"latin1", "caf\xe9"}};
  const Image img = random_image(5, 4, 3, 7);
  const auto dec = decode_png(encode_png(img, text), "mem");
  EXPECT_EQ(dec.text, text);
  EXPECT_EQ(dec.image.pixels, img.pixels);
}

TEST(PngEncode, RejectsMalformedInput) {
  const Image img = random_image(4, 4, 3, 3);
  EXPECT_THROW(encode_png(img, {{"", "v"}}), std::invalid_argument);
  EXPECT_THROW(encode_png(img, {{" lead", "v"}}), std::invalid_argument);
  EXPECT_THROW(encode_png(img, {{std::string(80, 'k'), "v"}}), std::invalid_argument);
  EXPECT_THROW(encode_png(img, {{"k", std::string("a\0b", 3)}}), std::invalid_argument);
  auto broken = [&](auto mutate) { Image bad = img; mutate(bad); return bad; };
  EXPECT_THROW(encode_png(broken([](Image& b) { b.channels = 2; })), std::invalid_argument);
  EXPECT_THROW(encode_png(broken([](Image& b) { b.pixels.pop_back(); })), std::invalid_argument);
  EXPECT_THROW(encode_png(broken([](Image& b) { b.width = 0; })), std::invalid_argument);
}

TEST(PngDecode, NormalisesGrayAlphaAnd16Bit) {
  // Gray+alpha decodes to RGBA.
  const uint8_t ga[12] = {0, 255, 10, 128, 20, 0, 30, 255, 40, 1, 250, 255};
  const std::string ga_png = libpng_encode(PNG_FORMAT_GA, 3, 2, ga);
  ASSERT_FALSE(ga_png.empty());
  const auto dec = decode_png(ga_png, "ga");
  ASSERT_EQ(dec.image.channels, 4);
  ASSERT_EQ(dec.image.pixels.size(), 24u);
  for (int i = 0; i < 6; ++i)
    for (int k = 0; k < 4; ++k)
      EXPECT_EQ(dec.image.pixels[i * 4 + k], ga[i * 2 + (k == 3 ? 1 : 0)]) << i << "," << k;
  // 16-bit gray decodes to 8-bit (high byte).
  const uint16_t y16[2] = {0x1234, 0xfe00};
  const std::string y_png = libpng_encode(PNG_FORMAT_LINEAR_Y, 2, 1, y16);
  ASSERT_FALSE(y_png.empty());
  const auto dec16 = decode_png(y_png, "y16");
  ASSERT_EQ(dec16.image.channels, 1);
  EXPECT_EQ(dec16.image.pixels, (std::vector<uint8_t>{0x12, 0xfe}));
}

TEST(PngDecode, CorruptOrTruncatedDataThrowsNamingSource) {
  const std::string good = encode_png(random_image(7, 5, 3, 9), {{"k", "value"}});
  expect_runtime_error_naming([] { decode_png("", "empty.png"); }, "empty.png");
  expect_runtime_error_naming([] { decode_png("hello world, not a png", "garbage.png"); },
                              "garbage.png");
  std::string bad_sig = good;
  bad_sig[1] = 'X';
  expect_runtime_error_naming([&] { decode_png(bad_sig, "sig.png"); }, "sig.png");

  // Every strict prefix is truncated (IEND and its CRC come last).
  for (size_t n = 0; n < good.size(); ++n)
    expect_runtime_error_naming([&] { decode_png(good.substr(0, n), "cut.png"); }, "cut.png");

  // A flipped byte inside the image data breaks the IDAT CRC.
  const size_t idat = good.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  std::string flipped = good;
  flipped[idat + 6] = static_cast<char>(flipped[idat + 6] ^ 0x5a);
  expect_runtime_error_naming([&] { decode_png(flipped, "crc.png"); }, "crc.png");

  // Flipping any single byte must either decode or throw, never crash.
  for (size_t i = 0; i < good.size(); ++i) {
    std::string mutated = good;
    mutated[i] = static_cast<char>(~mutated[i]);
    try {
      (void)decode_png(mutated, "fuzz.png");
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("fuzz.png"), std::string::npos);
    }
  }
}

TEST(PngFile, WriteThenReadIsAtomicAndOverwrites) {
  TempDir dir;
  const std::string path = dir.file("plot.png");
  const Image a = random_image(11, 6, 4, 5), b = random_image(3, 8, 1, 6);
  write_png(path, a, {{"step", "1"}});
  auto dec = read_png(path);
  EXPECT_EQ(dec.image.pixels, a.pixels);
  EXPECT_EQ(dec.text.at("step"), "1");

  write_png(path, b);  // replaces the previous file
  dec = read_png(path);
  EXPECT_EQ(dec.image.width, 3);
  EXPECT_EQ(dec.image.pixels, b.pixels);
  EXPECT_TRUE(dec.text.empty());

  // Only the target remains: no temporary files left behind.
  EXPECT_EQ(dir.names(), std::set<std::string>{"plot.png"});
}

TEST(PngFile, ErrorsNameThePath) {
  TempDir dir;
  const std::string missing_dir = dir.file("no_such_dir/x.png");
  expect_runtime_error_naming(
      [&] { write_png(missing_dir, random_image(2, 2, 3, 1)); }, missing_dir);
  const std::string missing = dir.file("missing.png");
  expect_runtime_error_naming([&] { read_png(missing); }, missing);
  const std::string junk = dir.file("junk.png");
  std::ofstream(junk) << "definitely not a png";
  expect_runtime_error_naming([&] { read_png(junk); }, junk);
  // An invalid image is reported with the path too, and nothing is created.
  Image bad = random_image(2, 2, 3, 1);
  bad.pixels.clear();
  const std::string target = dir.file("bad.png");
  expect_runtime_error_naming([&] { write_png(target, bad); }, target);
  EXPECT_FALSE(path_exists(target));
}

// ----- Canvas ---------------------------------------------------------------

TEST(CanvasPoint, ColoursTheExpectedPixel) {
  // 100x50 pixels over [-1, 1] x [-1, 1]: 50 px per unit in x, 25 in y.
  Canvas cv(100, 50, -1, 1, -1, 1);
  cv.point(0.5, 0.5, kRed, /*radius=*/0);
  // col = floor((0.5 + 1) * 50) = 75; row = floor((1 - 0.5) * 25) = floor(12.5) = 12.
  EXPECT_EQ(pixel(cv.image(), 75, 12).g, 0);  // red
  EXPECT_EQ(count_non_white(cv.image()), 1);

  // y grows upward: y = -0.5 -> row floor(1.5 * 25) = 37.
  cv.point(0.5, -0.5, kRed, 0);
  EXPECT_FALSE(is_white(cv.image(), 75, 37));
  // The max corner (xmax, ymin) lands in the last column / row.
  cv.point(1.0, -1.0, kRed, 0);
  EXPECT_FALSE(is_white(cv.image(), 99, 49));
  EXPECT_EQ(count_non_white(cv.image()), 3);
}

TEST(CanvasPoint, RadiusAndAlpha) {
  Canvas cv(20, 20, 0, 20, 0, 20);  // 1 px per unit; (x, y) -> col x, row 19 - y
  cv.point(5.5, 5.5, kBlack, /*radius=*/1, /*alpha=*/0.5);
  // radius 1 -> the 3x3 block around col 5, row 14, blended 50% over white.
  for (int r = 13; r <= 15; ++r)
    for (int c = 4; c <= 6; ++c) EXPECT_EQ(pixel(cv.image(), c, r).r, 128) << c << "," << r;
  EXPECT_EQ(count_non_white(cv.image()), 9);
  // A second point at the same place accumulates: 128 * 0.5 = 64.
  cv.points({5.5f, 5.5f}, kBlack, 0, 0.5);
  EXPECT_EQ(pixel(cv.image(), 5, 14).r, 64);
  EXPECT_THROW(cv.points({1.f, 2.f, 3.f}, kBlack), std::invalid_argument);
}

TEST(CanvasLine, ColoursPixelsAlongItAndNotFarAway) {
  Canvas cv(100, 100, 0, 100, 0, 100);  // pixel (c, r) centre = data (c + 0.5, 99.5 - r)
  // Horizontal line through pixel centres of row 99.5 - 50.5 = 49, cols 10..89.
  cv.line(10.5, 50.5, 89.5, 50.5, kBlack);
  for (int c = 10; c <= 89; ++c) EXPECT_EQ(pixel(cv.image(), c, 49).r, 0) << c;
  for (int r = 0; r < 100; ++r)
    for (int c = 0; c < 100; ++c)
      if (r != 49 || c < 9 || c > 90) {
        EXPECT_TRUE(is_white(cv.image(), c, r)) << c << "," << r;
      }

  // Diagonal y = x from (10.5, 10.5) to (80.5, 80.5): pixels (10 + k, 89 - k).
  Canvas dg(100, 100, 0, 100, 0, 100);
  dg.line(10.5, 10.5, 80.5, 80.5, kRed);
  for (int k = 0; k <= 70; ++k) EXPECT_EQ(pixel(dg.image(), 10 + k, 89 - k).g, 0) << k;
  for (int r = 0; r < 100; ++r)
    for (int c = 0; c < 100; ++c) {
      const double x = c + 0.5, y = 99.5 - r;  // pixel centre in data units (= pixels)
      const double t = std::clamp((x - 10.5 + y - 10.5) / 140.0, 0.0, 1.0);
      const double d = std::hypot(x - (10.5 + 70 * t), y - (10.5 + 70 * t));
      if (d > 1.5) {
        EXPECT_TRUE(is_white(dg.image(), c, r)) << c << "," << r;
      }
    }
}

TEST(CanvasLine, ThicknessAndSingleBlendPerCall) {
  Canvas cv(40, 40, 0, 40, 0, 40);
  cv.line(5.5, 20.5, 30.5, 20.5, kBlack, 1.0, /*thickness=*/5);  // row 19, +-2 rows
  for (int r = 17; r <= 21; ++r) EXPECT_EQ(pixel(cv.image(), 15, r).r, 0) << r;
  EXPECT_TRUE(is_white(cv.image(), 15, 16));
  EXPECT_TRUE(is_white(cv.image(), 15, 22));

  // A polyline with alpha 0.5 blends its joint pixel once, not twice.
  Canvas pl(40, 40, 0, 40, 0, 40);
  pl.polyline({5.5f, 5.5f, 20.5f, 5.5f, 20.5f, 30.5f}, kBlack, 0.5);
  EXPECT_EQ(pixel(pl.image(), 20, 34).r, 128);  // the corner (20.5, 5.5)
  EXPECT_EQ(pixel(pl.image(), 12, 34).r, 128);  // on the first segment
  EXPECT_EQ(pixel(pl.image(), 20, 20).r, 128);  // on the second segment
  EXPECT_THROW(pl.polyline({1.f, 2.f, 3.f}, kBlack), std::invalid_argument);
}

TEST(CanvasSafety, NonFiniteAndOutOfRangeInputIsIgnored) {
  Canvas cv(64, 48, -2, 2, -2, 2);
  const double bad[] = {kNaN, kInf, -kInf, 1e300, -1e300, 1e308, -1e308, 5.0, -5.0};
  for (double x : bad)
    for (double y : bad) {
      cv.point(x, y, kBlack, 3);
      cv.point(x, 0, kBlack, 1 << 30);
      cv.marker(x, y, kBlack, 1 << 30);
      cv.line(x, y, 0, 0, kRed, 0.3, 3);
      cv.line(x, y, -x, -y, kRed, 0.3, 1 << 30);
      cv.line(x, y, x, y, kRed);
    }
  const float fnan = std::numeric_limits<float>::quiet_NaN();
  const float finf = std::numeric_limits<float>::infinity();
  cv.points({fnan, 0.f, 0.f, finf, 3e38f, -3e38f}, kBlack, 2);
  cv.polyline({fnan, fnan, finf, 0.f, 3e38f, 3e38f, -3e38f, 1.f}, kBlack);
  cv.point(0, 0, kBlack, 1, kNaN);  // NaN alpha: skipped
  EXPECT_EQ(cv.image().pixels.size(), size_t(64 * 48 * 3));

  // Points outside the range (but finite) leave the canvas untouched.
  Canvas clean(64, 48, -2, 2, -2, 2);
  clean.point(2.5, 0, kBlack, 0);
  clean.point(kNaN, 0, kBlack, 5);
  clean.points({fnan, 1.f, 1.f, finf}, kBlack, 3);
  clean.line(kNaN, 0, 1, 1, kBlack);
  clean.line(3, 3, 4, 4, kBlack);  // entirely outside
  clean.polyline({fnan, fnan}, kBlack);
  clean.marker(kInf, 0, kBlack);
  EXPECT_EQ(count_non_white(clean.image()), 0);

  // Huge lines are clipped and still drawn across the whole canvas
  // (1 px per unit: y = 24.5 -> row 47 - 24 = 23, the centre of the row).
  Canvas wide(64, 48, 0, 64, 0, 48);
  wide.line(-1e30, 24.5, 1e30, 24.5, kBlack);
  for (int c = 0; c < 64; ++c) EXPECT_EQ(pixel(wide.image(), c, 23).r, 0) << c;
  Canvas diag(64, 48, 0, 64, 0, 48);  // y = x through pixel centres: (k, 47 - k)
  diag.line(-1e30, -1e30, 1e30, 1e30, kBlack);
  for (int k = 0; k < 48; ++k) EXPECT_EQ(pixel(diag.image(), k, 47 - k).r, 0) << k;
  // A polyline with a NaN vertex breaks there instead of failing.
  Canvas broken(40, 40, 0, 40, 0, 40);
  broken.polyline({5.5f, 5.5f, 10.5f, 5.5f, fnan, 0.f, 20.5f, 5.5f, 30.5f, 5.5f}, kBlack);
  EXPECT_EQ(pixel(broken.image(), 7, 34).r, 0);
  EXPECT_TRUE(is_white(broken.image(), 15, 34));
  EXPECT_EQ(pixel(broken.image(), 25, 34).r, 0);
}

TEST(CanvasMisc, AxesMarkerPaletteAndValidation) {
  Canvas cv(100, 50, -1, 1, -1, 1);
  cv.axes({200, 200, 200});
  // x = 0 -> col 50, y = 0 -> row 25, plus the border.
  const int on_axes[][2] = {{50, 10}, {20, 25}, {20, 0}, {0, 10}, {99, 10}, {20, 49}};
  for (const auto& cr : on_axes) EXPECT_EQ(pixel(cv.image(), cr[0], cr[1]).r, 200);
  EXPECT_TRUE(is_white(cv.image(), 20, 10));

  cv.marker(0.5, 0.5, kRed, 2);  // centre col 75, row 12
  for (int k = -2; k <= 2; ++k) {
    EXPECT_EQ(pixel(cv.image(), 75 + k, 12 + k).g, 0);
    EXPECT_EQ(pixel(cv.image(), 75 + k, 12 - k).g, 0);
  }
  EXPECT_TRUE(is_white(cv.image(), 76, 12));

  for (int i = 0; i < 10; ++i)
    for (int j = i + 1; j < 10; ++j) {
      const Color a = palette(i), b = palette(j);
      EXPECT_FALSE(a.r == b.r && a.g == b.g && a.b == b.b) << i << " vs " << j;
    }
  EXPECT_EQ(palette(13).r, palette(3).r);
  EXPECT_EQ(palette(-1).g, palette(9).g);

  EXPECT_THROW(Canvas(0, 10, 0, 1, 0, 1), std::invalid_argument);
  EXPECT_THROW(Canvas(10, 10, 1, 1, 0, 1), std::invalid_argument);
  EXPECT_THROW(Canvas(10, 10, 0, 1, 0, kNaN), std::invalid_argument);

  // A canvas encodes as an RGB PNG.
  const auto dec = decode_png(encode_png(cv.image()), "canvas");
  EXPECT_EQ(dec.image.pixels, cv.image().pixels);
}

TEST(CanvasTile, PlacesImagesAtExpectedOffsets) {
  // Five 3x2 RGB tiles, tile k filled with value 10 k + 1; 3 columns, pad 2.
  std::vector<Image> tiles;
  for (int k = 0; k < 5; ++k) {
    Image t{3, 2, 3, std::vector<uint8_t>(18, static_cast<uint8_t>(10 * k + 1))};
    t.pixels[0] = static_cast<uint8_t>(200 + k);  // mark the top-left pixel
    tiles.push_back(t);
  }
  const Image grid = tile(tiles, 3, 2, 255);
  EXPECT_EQ(grid.width, 3 * 3 + 2 * 2);   // 13
  EXPECT_EQ(grid.height, 2 * 2 + 1 * 2);  // 6
  EXPECT_EQ(grid.channels, 3);
  auto at = [&](int x, int y) { return grid.pixels[(size_t(y) * grid.width + x) * 3 + 1]; };
  for (int y = 0; y < grid.height; ++y)
    for (int x = 0; x < grid.width; ++x) {
      const int col = x / 5, row = y / 4, lx = x % 5, ly = y % 4;  // tile pitch 3+2, 2+2
      const int k = row * 3 + col;
      if (lx >= 3 || ly >= 2 || k >= 5) {
        EXPECT_EQ(at(x, y), 255) << x << "," << y;  // padding / empty slot
      } else {
        EXPECT_EQ(at(x, y), 10 * k + 1) << x << "," << y;
      }
    }
  // Top-left markers at x = (k % 3) * 5, y = (k / 3) * 4.
  for (int k = 0; k < 5; ++k)
    EXPECT_EQ(grid.pixels[(size_t((k / 3) * 4) * grid.width + (k % 3) * 5) * 3], 200 + k);

  // Fewer images than columns: the grid shrinks to fit.
  EXPECT_EQ(tile({tiles[0], tiles[1]}, 8, 1).width, 3 * 2 + 1);
  const Image other{2, 2, 3, std::vector<uint8_t>(12)};
  EXPECT_THROW(tile({tiles[0], other}, 2), std::invalid_argument);
  EXPECT_THROW(tile({}, 2), std::invalid_argument);
  EXPECT_THROW(tile(tiles, 0), std::invalid_argument);
}

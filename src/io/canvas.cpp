// Raster plotting canvas and image tiling; see canvas.h for the coordinate
// conventions. Everything here works on plain byte buffers (no torch).
//
// Safety rule used throughout: coordinates are checked for finiteness and
// clipped/clamped in double precision *before* any conversion to an integer
// index, so NaN, inf and huge values can never produce an out-of-range index
// (or an undefined float-to-int conversion).
#include "arcflow/io/canvas.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace arcflow::io {
namespace {

constexpr uint64_t kMaxCanvasPixels = uint64_t{1} << 28;  // 256 Mpx, ~768 MB RGB

// Clamps a (finite) double index range to [0, n-1]; returns false if empty.
bool clamp_range(double lo, double hi, int n, long* out_lo, long* out_hi) {
  lo = std::max(lo, 0.0);
  hi = std::min(hi, double(n - 1));
  if (!(lo <= hi)) return false;  // also rejects NaN
  *out_lo = static_cast<long>(lo);
  *out_hi = static_cast<long>(hi);
  return true;
}

// Distance from p to segment ab (all in pixel units).
double segment_distance(double px, double py, double ax, double ay, double bx, double by) {
  const double vx = bx - ax, vy = by - ay;
  const double len2 = vx * vx + vy * vy;
  double t = len2 > 0 ? ((px - ax) * vx + (py - ay) * vy) / len2 : 0.0;
  t = std::clamp(t, 0.0, 1.0);
  const double dx = px - (ax + t * vx), dy = py - (ay + t * vy);
  return std::sqrt(dx * dx + dy * dy);
}

// Liang-Barsky: clips segment a + t (b - a), t in [0, 1], to the rectangle
// [lo_x, hi_x] x [lo_y, hi_y]. Returns false if nothing remains.
// A clipped end is snapped exactly onto the edge that cut it and its other
// coordinate is computed from the line's slope and intercept. Unlike
// a + t (b - a), this stays exact for huge but "nice" endpoints such as
// (-1e30, -1e30) -> (1e30, 1e30) (no catastrophic cancellation).
bool clip_segment(double& ax, double& ay, double& bx, double& by, double lo_x, double hi_x,
                  double lo_y, double hi_y) {
  const double dx = bx - ax, dy = by - ay;
  if (!std::isfinite(dx) || !std::isfinite(dy)) return false;
  double t0 = 0.0, t1 = 1.0;
  int e0 = -1, e1 = -1;  // which edge set t0 / t1
  const double p[4] = {-dx, dx, -dy, dy};
  const double q[4] = {ax - lo_x, hi_x - ax, ay - lo_y, hi_y - ay};
  const double edge[4] = {lo_x, hi_x, lo_y, hi_y};
  for (int k = 0; k < 4; ++k) {
    if (p[k] == 0.0) {
      if (q[k] < 0.0) return false;  // parallel to and outside this edge
      continue;
    }
    const double r = q[k] / p[k];
    if (p[k] < 0.0) {
      if (r > t1) return false;
      if (r > t0) t0 = r, e0 = k;
    } else {
      if (r < t0) return false;
      if (r < t1) t1 = r, e1 = k;
    }
  }
  // The point where the segment crosses edge k (k < 2: vertical edges);
  // dx (resp. dy) is non-zero there because p[k] != 0.
  const double ox = ax, oy = ay;
  auto on_edge = [&](int k, double& x, double& y) {
    if (k < 2) {
      const double slope = dy / dx;
      x = edge[k];
      y = (oy - ox * slope) + x * slope;
    } else {
      const double slope = dx / dy;
      y = edge[k];
      x = (ox - oy * slope) + y * slope;
    }
  };
  if (e1 >= 0) on_edge(e1, bx, by);
  if (e0 >= 0) on_edge(e0, ax, ay);
  return std::isfinite(ax) && std::isfinite(ay) && std::isfinite(bx) && std::isfinite(by);
}

}  // namespace

Canvas::Canvas(int width, int height, double xmin, double xmax, double ymin, double ymax,
               Color background)
    : width_(width), height_(height), xmin_(xmin), xmax_(xmax), ymin_(ymin), ymax_(ymax) {
  if (width <= 0 || height <= 0 || uint64_t(width) * uint64_t(height) > kMaxCanvasPixels)
    throw std::invalid_argument("Canvas: bad size " + std::to_string(width) + "x" +
                                std::to_string(height));
  sx_ = width / (xmax - xmin);
  sy_ = height / (ymax - ymin);
  if (!std::isfinite(xmin) || !std::isfinite(xmax) || !std::isfinite(ymin) ||
      !std::isfinite(ymax) || !(xmax > xmin) || !(ymax > ymin) || !std::isfinite(sx_) ||
      !std::isfinite(sy_))
    throw std::invalid_argument("Canvas: data range must be finite and non-empty");
  img_.width = width;
  img_.height = height;
  img_.channels = 3;
  img_.pixels.resize(size_t(width) * size_t(height) * 3);
  for (size_t i = 0; i < img_.pixels.size(); i += 3) {
    img_.pixels[i] = background.r;
    img_.pixels[i + 1] = background.g;
    img_.pixels[i + 2] = background.b;
  }
}

bool Canvas::pixel_of(double x, double y, int margin, long* col, long* row) const {
  if (!std::isfinite(x) || !std::isfinite(y)) return false;
  const double px = to_px(x), py = to_py(y);
  const double m = double(margin) + 1.0;
  if (!(px >= -m && px <= width_ + m && py >= -m && py <= height_ + m)) return false;
  *col = x == xmax_ ? width_ - 1 : static_cast<long>(std::floor(px));
  *row = y == ymin_ ? height_ - 1 : static_cast<long>(std::floor(py));
  return true;
}

void Canvas::blend(size_t pixel, Color c, double a) {
  uint8_t* p = img_.pixels.data() + pixel * 3;
  const uint8_t src[3] = {c.r, c.g, c.b};
  for (int k = 0; k < 3; ++k)
    p[k] = static_cast<uint8_t>(std::lround(p[k] + (src[k] - p[k]) * a));
}

void Canvas::set(long col, long row, Color c) {
  if (col < 0 || row < 0 || col >= width_ || row >= height_) return;
  uint8_t* p = img_.pixels.data() + (size_t(row) * size_t(width_) + size_t(col)) * 3;
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

void Canvas::point(double x, double y, Color c, int radius, double alpha) {
  if (!(alpha > 0.0)) return;  // also skips NaN alpha
  alpha = std::min(alpha, 1.0);
  const long r = std::clamp<long>(radius, 0, 2L * std::max(width_, height_));
  long c0, r0;
  if (!pixel_of(x, y, static_cast<int>(r), &c0, &r0)) return;
  long clo, chi, rlo, rhi;
  if (!clamp_range(static_cast<double>(c0 - r), static_cast<double>(c0 + r), width_, &clo, &chi) ||
      !clamp_range(static_cast<double>(r0 - r), static_cast<double>(r0 + r), height_, &rlo, &rhi))
    return;
  const long limit = r * (r + 1);
  for (long row = rlo; row <= rhi; ++row)
    for (long col = clo; col <= chi; ++col) {
      const long dc = col - c0, dr = row - r0;
      if (dc * dc + dr * dr <= limit) blend(size_t(row) * size_t(width_) + size_t(col), c, alpha);
    }
}

void Canvas::points(const std::vector<float>& xy, Color c, int radius, double alpha) {
  if (xy.size() % 2 != 0)
    throw std::invalid_argument("Canvas::points: odd number of coordinates (" +
                                std::to_string(xy.size()) + ")");
  for (size_t i = 0; i + 1 < xy.size(); i += 2) point(xy[i], xy[i + 1], c, radius, alpha);
}

void Canvas::stroke(double x0, double y0, double x1, double y1, double half_width) {
  const double reach = half_width + 0.5;  // coverage is zero beyond this distance
  // Clip to the canvas plus a margin wider than the stroke, so the clipped
  // ends (and their round caps) lie outside the visible area. Clip in data
  // space first (huge coordinates keep their precision there), then again in
  // pixel space to absorb rounding from the mapping.
  const double m = reach + 2.0;
  if (!clip_segment(x0, y0, x1, y1, xmin_ - m / sx_, xmax_ + m / sx_, ymin_ - m / sy_,
                    ymax_ + m / sy_))
    return;
  double ax = to_px(x0), ay = to_py(y0), bx = to_px(x1), by = to_py(y1);
  if (!clip_segment(ax, ay, bx, by, -m, width_ + m, -m, height_ + m)) return;
  if (cov_.empty()) cov_.assign(size_t(width_) * size_t(height_), 0.0f);

  auto cover = [&](long col, long row) {
    const double d = segment_distance(static_cast<double>(col) + 0.5, static_cast<double>(row) + 0.5, ax, ay, bx, by);
    const double coverage = std::min(1.0, reach - d);
    if (coverage <= 0.0) return;
    const size_t idx = size_t(row) * size_t(width_) + size_t(col);
    if (cov_[idx] == 0.0f) touched_.push_back(idx);
    cov_[idx] = std::max(cov_[idx], static_cast<float>(coverage));
  };

  // Walk the major axis; along the minor axis only a band of +-(2 reach + 1)
  // around the segment can be covered (reach / cos <= sqrt(2) reach inside,
  // plus the round caps near the ends).
  const double dx = bx - ax, dy = by - ay;
  const bool x_major = std::fabs(dx) >= std::fabs(dy);
  const double band = 2.0 * reach + 1.0;
  long lo, hi;
  if (x_major) {
    if (!clamp_range(std::floor(std::min(ax, bx) - reach), std::floor(std::max(ax, bx) + reach),
                     width_, &lo, &hi))
      return;
    for (long col = lo; col <= hi; ++col) {
      const double t = dx != 0.0 ? std::clamp((static_cast<double>(col) + 0.5 - ax) / dx, 0.0, 1.0) : 0.0;
      const double yc = ay + t * dy;
      long rlo, rhi;
      if (!clamp_range(std::floor(yc - band), std::floor(yc + band), height_, &rlo, &rhi)) continue;
      for (long row = rlo; row <= rhi; ++row) cover(col, row);
    }
  } else {
    if (!clamp_range(std::floor(std::min(ay, by) - reach), std::floor(std::max(ay, by) + reach),
                     height_, &lo, &hi))
      return;
    for (long row = lo; row <= hi; ++row) {
      const double t = std::clamp((static_cast<double>(row) + 0.5 - ay) / dy, 0.0, 1.0);  // dy != 0 here
      const double xc = ax + t * dx;
      long clo, chi;
      if (!clamp_range(std::floor(xc - band), std::floor(xc + band), width_, &clo, &chi)) continue;
      for (long col = clo; col <= chi; ++col) cover(col, row);
    }
  }
}

void Canvas::flush(Color c, double alpha) {
  for (size_t idx : touched_) {
    blend(idx, c, alpha * cov_[idx]);
    cov_[idx] = 0.0f;
  }
  touched_.clear();
}

void Canvas::line(double x0, double y0, double x1, double y1, Color c, double alpha,
                  int thickness) {
  if (!(alpha > 0.0)) return;
  alpha = std::min(alpha, 1.0);
  const int t = std::clamp(thickness, 1, 2 * std::max(width_, height_));
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  stroke(x0, y0, x1, y1, t / 2.0);
  flush(c, alpha);
}

void Canvas::polyline(const std::vector<float>& xy, Color c, double alpha, int thickness) {
  if (xy.size() % 2 != 0)
    throw std::invalid_argument("Canvas::polyline: odd number of coordinates (" +
                                std::to_string(xy.size()) + ")");
  if (!(alpha > 0.0) || xy.empty()) return;
  alpha = std::min(alpha, 1.0);
  const double hw = std::clamp(thickness, 1, 2 * std::max(width_, height_)) / 2.0;
  auto finite = [&](size_t i) { return std::isfinite(xy[i]) && std::isfinite(xy[i + 1]); };
  if (xy.size() == 2) {
    if (finite(0)) stroke(xy[0], xy[1], xy[0], xy[1], hw);  // a lone point: a dot
  } else {
    for (size_t i = 0; i + 3 < xy.size(); i += 2)
      if (finite(i) && finite(i + 2)) stroke(xy[i], xy[i + 1], xy[i + 2], xy[i + 3], hw);
  }
  flush(c, alpha);
}

void Canvas::marker(double x, double y, Color c, int size) {
  const long s = std::clamp<long>(size, 0, 2L * std::max(width_, height_));
  long c0, r0;
  if (!pixel_of(x, y, static_cast<int>(s), &c0, &r0)) return;
  for (long k = -s; k <= s; ++k) {  // set() ignores pixels off the canvas
    set(c0 + k, r0 + k, c);
    set(c0 + k, r0 - k, c);
  }
}

void Canvas::axes(Color c) {
  if (xmin_ <= 0.0 && 0.0 <= xmax_) {  // vertical line x = 0
    const long col = xmax_ == 0.0 ? width_ - 1 : static_cast<long>(std::floor(to_px(0.0)));
    for (long row = 0; row < height_; ++row) set(col, row, c);
  }
  if (ymin_ <= 0.0 && 0.0 <= ymax_) {  // horizontal line y = 0
    const long row = ymin_ == 0.0 ? height_ - 1 : static_cast<long>(std::floor(to_py(0.0)));
    for (long col = 0; col < width_; ++col) set(col, row, c);
  }
  for (long col = 0; col < width_; ++col) {  // border
    set(col, 0, c);
    set(col, height_ - 1, c);
  }
  for (long row = 0; row < height_; ++row) {
    set(0, row, c);
    set(width_ - 1, row, c);
  }
}

Color palette(int i) {
  static const Color kTab10[10] = {
      {31, 119, 180}, {255, 127, 14}, {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return kTab10[((i % 10) + 10) % 10];
}

Image tile(const std::vector<Image>& images, int cols, int pad, uint8_t background) {
  if (images.empty()) throw std::invalid_argument("tile: no images");
  if (cols < 1) throw std::invalid_argument("tile: cols must be >= 1");
  if (pad < 0) throw std::invalid_argument("tile: pad must be >= 0");
  const Image& first = images.front();
  const int w = first.width, h = first.height, ch = first.channels;
  if (w <= 0 || h <= 0 || (ch != 1 && ch != 3 && ch != 4))
    throw std::invalid_argument("tile: malformed first image");
  const size_t tile_bytes = size_t(w) * size_t(h) * size_t(ch);
  for (size_t k = 0; k < images.size(); ++k) {
    const Image& im = images[k];
    if (im.width != w || im.height != h || im.channels != ch || im.pixels.size() != tile_bytes)
      throw std::invalid_argument("tile: image " + std::to_string(k) +
                                  " differs in size/channels from image 0 or is malformed");
  }
  const uint64_t n = images.size();
  const uint64_t ncols = std::min<uint64_t>(uint64_t(cols), n);
  const uint64_t nrows = (n + ncols - 1) / ncols;
  const uint64_t out_w = ncols * uint64_t(w) + (ncols - 1) * uint64_t(pad);
  const uint64_t out_h = nrows * uint64_t(h) + (nrows - 1) * uint64_t(pad);
  if (out_w > uint64_t(INT32_MAX) || out_h > uint64_t(INT32_MAX) ||
      out_w * out_h > kMaxCanvasPixels)
    throw std::invalid_argument("tile: grid too large");

  Image out;
  out.width = static_cast<int>(out_w);
  out.height = static_cast<int>(out_h);
  out.channels = ch;
  out.pixels.assign(size_t(out_w * out_h) * size_t(ch), background);
  const size_t src_stride = size_t(w) * size_t(ch);
  const size_t dst_stride = size_t(out_w) * size_t(ch);
  for (size_t k = 0; k < images.size(); ++k) {
    const size_t x0 = (k % ncols) * (size_t(w) + size_t(pad));
    const size_t y0 = (k / ncols) * (size_t(h) + size_t(pad));
    for (size_t r = 0; r < size_t(h); ++r)
      std::memcpy(out.pixels.data() + (y0 + r) * dst_stride + x0 * size_t(ch),
                  images[k].pixels.data() + r * src_stride, src_stride);
  }
  return out;
}

}  // namespace arcflow::io

// A tiny raster plotting canvas (RGB, no torch) for the 2-D toy report:
// scatter plots of point clouds, trajectory polylines, step markers, plus
// tiling of equally sized images into a grid.
//
// Coordinates. The canvas maps the data rectangle [xmin, xmax] x [ymin, ymax]
// onto width x height pixels; y grows upward in data space, so row 0 is the
// top (y = ymax). With continuous pixel coordinates
//     px = (x - xmin) / (xmax - xmin) * width
//     py = (ymax - y) / (ymax - ymin) * height
// a data point lies in pixel column floor(px), row floor(py); pixel (c, r)
// has its centre at (c + 0.5, r + 0.5). Points exactly on the right/bottom
// edge (x == xmax, y == ymin) belong to the last column/row.
//
// Robustness. Every drawing call skips NaN/inf coordinates and clips against
// the canvas, so huge or far-away coordinates never touch memory outside the
// image. Alpha values are clamped to [0, 1].
#pragma once

#include <cstdint>
#include <vector>

#include "arcflow/io/png.h"

namespace arcflow::io {

struct Color {
  uint8_t r, g, b;
};

class Canvas {
 public:
  // Throws std::invalid_argument for a non-positive size or an empty or
  // non-finite data range.
  Canvas(int width, int height, double xmin, double xmax, double ymin, double ymax,
         Color background = {255, 255, 255});

  // Filled disc centred on the pixel containing (x, y): the pixels (c, r)
  // with (c - c0)^2 + (r - r0)^2 <= radius * (radius + 1). radius 0 is one
  // pixel, 1 a 3x3 square, 2 a 21-pixel disc. Alpha-blended over the canvas.
  void point(double x, double y, Color c, int radius = 1, double alpha = 1.0);

  // point() for each (x, y) in xy = x0, y0, x1, y1, ...; overlapping points
  // accumulate, so dense regions look darker. Throws std::invalid_argument
  // if xy has odd length. Non-finite pairs are skipped.
  void points(const std::vector<float>& xy, Color c, int radius = 1, double alpha = 0.5);

  // Anti-aliased segment with round caps: a pixel is covered by
  // clamp(thickness / 2 + 0.5 - d, 0, 1), d = distance from its centre to the
  // segment (in pixels), and blended with alpha * coverage. Each pixel is
  // blended once per call.
  void line(double x0, double y0, double x1, double y1, Color c, double alpha = 1.0,
            int thickness = 1);

  // Connected segments through the points of xy (interleaved like points()).
  // Segments touching a non-finite point are skipped (the line breaks there);
  // a single point draws a dot. Each pixel is blended once per call, so
  // joints do not darken with alpha < 1. Throws on odd length.
  void polyline(const std::vector<float>& xy, Color c, double alpha = 1.0, int thickness = 1);

  // Opaque diagonal cross ("x") centred on the pixel containing (x, y), with
  // arms `size` pixels long (a (2 size + 1)-pixel square footprint).
  void marker(double x, double y, Color c, int size = 3);

  // Opaque one-pixel lines through x = 0 and y = 0 (where inside the range)
  // plus a border around the canvas.
  void axes(Color c = {200, 200, 200});

  // The canvas as a 3-channel RGB image.
  const Image& image() const { return img_; }

  int width() const { return width_; }
  int height() const { return height_; }

 private:
  double to_px(double x) const { return (x - xmin_) * sx_; }
  double to_py(double y) const { return (ymax_ - y) * sy_; }
  // Pixel column/row containing a data coordinate; false if off the canvas
  // by more than `margin` pixels or not finite.
  bool pixel_of(double x, double y, int margin, long* col, long* row) const;
  void blend(size_t pixel, Color c, double a);
  void set(long col, long row, Color c);
  // Accumulates (max) the coverage of one segment, in data coordinates, into
  // cov_/touched_; flush() blends and clears it.
  void stroke(double x0, double y0, double x1, double y1, double half_width);
  void flush(Color c, double alpha);

  int width_, height_;
  double xmin_, xmax_, ymin_, ymax_;
  double sx_, sy_;  // pixels per data unit
  Image img_;
  std::vector<float> cov_;    // per-pixel coverage of the stroke in progress
  std::vector<size_t> touched_;  // pixels with cov_ > 0
};

// Distinct colours for series i = 0, 1, ... (matplotlib's tab10, cycling).
Color palette(int i);

// Tiles equally sized images (same width, height and channels) into a grid
// with `cols` columns (fewer if there are fewer images) and `pad` pixels of
// `background` (every channel) between neighbours, none around the outside.
// Image k goes to column k % cols, row k / cols, i.e. its top-left pixel is
// at x = (k % cols) * (width + pad), y = (k / cols) * (height + pad).
// Throws std::invalid_argument for no images, cols < 1, pad < 0 or
// mismatched/malformed images.
Image tile(const std::vector<Image>& images, int cols, int pad = 2, uint8_t background = 255);

}  // namespace arcflow::io

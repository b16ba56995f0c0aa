// Small self-contained SVG charts for the eval page (issue 14): line plots (training curves) and
// bar histograms (learnt mixture weights and rates). No dependencies; text is XML-escaped;
// non-finite points are left out (a line breaks there). Colours: io::palette (tab10).
#pragma once

#include <string>
#include <vector>

namespace arcflow {

struct SvgSeries {
  std::string name;
  std::vector<double> x, y;  // same length
};

// Lines with point markers, axes with about 5 ticks each, a title, axis labels and a legend (one
// entry per series). An empty or all-non-finite input gives a frame that says "no data".
std::string svg_line_plot(const std::string& title, const std::string& x_label, const std::string& y_label,
                          const std::vector<SvgSeries>& series, int width = 460, int height = 300);

// Bars over equal bins of [lo, hi] with heights counts[i] / sum (fractions); `note` is printed
// under the axis (e.g. mass outside the range).
std::string svg_histogram(const std::string& title, const std::string& x_label, double lo, double hi,
                          const std::vector<double>& counts, const std::string& note = "", int width = 300,
                          int height = 190);


}  // namespace arcflow

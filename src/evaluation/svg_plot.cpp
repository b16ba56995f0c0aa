// SVG line plots and histograms (see svg_plot.h).
#include "arcflow/evaluation/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "arcflow/io/canvas.h"
#include "arcflow/util/text.h"

namespace arcflow {

namespace {

std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string hex(io::Color c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
  return buf;
}

// A tick label with as many decimals as the tick step needs.
std::string tick_label(double v, double step) {
  if (!(step > 0) || std::abs(v) >= 1e6 || step < 1e-9) return format_number(v, "%.4g");
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 12), v);
  return buf;
}

double tick_step(const std::vector<double>& t) { return t.size() > 1 ? t[1] - t[0] : 0.0; }

// About n "nice" ticks (1, 2, 5 x 10^k steps) covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int n = 5) {
  const double span = hi - lo;
  if (!(span > 0)) return {lo};
  const double raw = span / n, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * span; v += step)
    t.push_back(std::abs(v) < 1e-12 * span ? 0.0 : v);
  return t;
}

std::string text(double x, double y, const std::string& s, const char* anchor = "middle", int size = 11,
                 const std::string& extra = "") {
  return "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\" font-size=\"" + std::to_string(size) +
         "\" text-anchor=\"" + anchor + "\"" + extra + ">" + xml_escape(s) + "</text>\n";
}

std::string open_svg(int width, int height) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
         std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) +
         "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
}

}  // namespace

std::string svg_line_plot(const std::string& title, const std::string& x_label, const std::string& y_label,
                          const std::vector<SvgSeries>& series, int width, int height) {
  const double left = 62, right = 12, top = 26, legend_h = 16.0 * static_cast<double>(series.size());
  const double bottom = 40 + legend_h;
  const double pw = width - left - right, ph = height - top - bottom;
  std::string s = open_svg(width, height);
  s += text(width / 2.0, 16, title, "middle", 13, " font-weight=\"bold\"");
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const SvgSeries& se : series)
    for (size_t i = 0; i < std::min(se.x.size(), se.y.size()); ++i)
      if (std::isfinite(se.x[i]) && std::isfinite(se.y[i])) {
        xmin = std::min(xmin, se.x[i]);
        xmax = std::max(xmax, se.x[i]);
        ymin = std::min(ymin, se.y[i]);
        ymax = std::max(ymax, se.y[i]);
      }
  s += "<rect x=\"" + px(left) + "\" y=\"" + px(top) + "\" width=\"" + px(pw) + "\" height=\"" + px(ph) +
       "\" fill=\"none\" stroke=\"#999\"/>\n";
  if (!(xmin <= xmax)) return s + text(left + pw / 2, top + ph / 2, "no data") + "</svg>\n";
  if (xmax == xmin) xmin -= 1, xmax += 1;
  const double pad = ymax > ymin ? 0.05 * (ymax - ymin) : std::max(1e-12, std::abs(ymax) * 0.1 + 1e-12);
  ymin -= pad, ymax += pad;
  const auto X = [&](double v) { return left + (v - xmin) / (xmax - xmin) * pw; };
  const auto Y = [&](double v) { return top + (ymax - v) / (ymax - ymin) * ph; };
  const std::vector<double> xt = ticks(xmin, xmax), yt = ticks(ymin, ymax);
  for (double t : xt) {
    s += "<line x1=\"" + px(X(t)) + "\" y1=\"" + px(top + ph) + "\" x2=\"" + px(X(t)) + "\" y2=\"" + px(top + ph + 4) +
         "\" stroke=\"#999\"/>\n" + text(X(t), top + ph + 16, tick_label(t, tick_step(xt)), "middle", 10);
  }
  for (double t : yt) {
    s += "<line x1=\"" + px(left) + "\" y1=\"" + px(Y(t)) + "\" x2=\"" + px(left + pw) + "\" y2=\"" + px(Y(t)) +
         "\" stroke=\"#eee\"/>\n" + text(left - 4, Y(t) + 3, tick_label(t, tick_step(yt)), "end", 10);
  }
  s += text(left + pw / 2, top + ph + 32, x_label);
  s += text(14, top + ph / 2, y_label, "middle", 11,
            " transform=\"rotate(-90 14 " + px(top + ph / 2) + ")\"");
  for (size_t k = 0; k < series.size(); ++k) {
    const SvgSeries& se = series[k];
    const std::string color = hex(io::palette(static_cast<int>(k)));
    std::string path, dots;
    bool pen = false;
    for (size_t i = 0; i < std::min(se.x.size(), se.y.size()); ++i) {
      if (!std::isfinite(se.x[i]) || !std::isfinite(se.y[i])) {
        pen = false;
        continue;
      }
      path += (pen ? " L" : " M") + px(X(se.x[i])) + " " + px(Y(se.y[i]));
      pen = true;
      dots += "<circle cx=\"" + px(X(se.x[i])) + "\" cy=\"" + px(Y(se.y[i])) + "\" r=\"2.5\" fill=\"" + color +
              "\"><title>" + xml_escape(se.name) + ": " + format_number(se.x[i], "%.4g") + ", " + format_number(se.y[i], "%.4g") + "</title></circle>\n";
    }
    if (!path.empty())
      s += "<path d=\"" + path.substr(1) + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"1.5\"/>\n";
    s += dots;
    const double ly = height - legend_h + 16.0 * static_cast<double>(k) - 2;
    s += "<line x1=\"" + px(left) + "\" y1=\"" + px(ly - 4) + "\" x2=\"" + px(left + 18) + "\" y2=\"" + px(ly - 4) +
         "\" stroke=\"" + color + "\" stroke-width=\"2\"/>\n" + text(left + 24, ly, se.name, "start", 11);
  }
  return s + "</svg>\n";
}

std::string svg_histogram(const std::string& title, const std::string& x_label, double lo, double hi,
                          const std::vector<double>& counts, const std::string& note, int width, int height) {
  const double left = 40, right = 10, top = 22, bottom = note.empty() ? 34 : 48;
  const double pw = width - left - right, ph = height - top - bottom;
  std::string s = open_svg(width, height);
  s += text(width / 2.0, 15, title, "middle", 12, " font-weight=\"bold\"");
  s += "<rect x=\"" + px(left) + "\" y=\"" + px(top) + "\" width=\"" + px(pw) + "\" height=\"" + px(ph) +
       "\" fill=\"none\" stroke=\"#999\"/>\n";
  double total = 0, peak = 0;
  for (double c : counts) total += std::max(0.0, c);
  for (double c : counts) peak = std::max(peak, total > 0 ? c / total : 0.0);
  if (counts.empty() || !(total > 0) || !(hi > lo)) return s + text(left + pw / 2, top + ph / 2, "no data") + "</svg>\n";
  const double ymax = peak * 1.05;
  const double bw = pw / static_cast<double>(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    const double f = std::max(0.0, counts[i]) / total, h = f / ymax * ph;
    const double b0 = lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(counts.size());
    s += "<rect x=\"" + px(left + bw * static_cast<double>(i)) + "\" y=\"" + px(top + ph - h) + "\" width=\"" +
         px(std::max(0.5, bw - 0.5)) + "\" height=\"" + px(h) + "\" fill=\"" + hex(io::palette(0)) + "\"><title>[" +
         format_number(b0, "%.4g") + ", " + format_number(b0 + (hi - lo) / static_cast<double>(counts.size()), "%.4g") + "): " + format_number(f, "%.4g") +
         "</title></rect>\n";
  }
  const std::vector<double> xt = ticks(lo, hi, 4);
  for (double t : xt) {
    const double x = left + (t - lo) / (hi - lo) * pw;
    s += "<line x1=\"" + px(x) + "\" y1=\"" + px(top + ph) + "\" x2=\"" + px(x) + "\" y2=\"" + px(top + ph + 4) +
         "\" stroke=\"#999\"/>\n" + text(x, top + ph + 15, tick_label(t, tick_step(xt)), "middle", 10);
  }
  s += text(left - 3, top + 8, format_number(ymax, "%.4g"), "end", 9) + text(left - 3, top + ph, "0", "end", 9);
  s += text(left + pw / 2, top + ph + 28, x_label, "middle", 10);
  if (!note.empty()) s += text(left + pw / 2, top + ph + 41, note, "middle", 9, " fill=\"#666\"");
  return s + "</svg>\n";
}

}  // namespace arcflow

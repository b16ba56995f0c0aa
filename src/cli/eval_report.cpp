#include "eval_report.h"

#include <cmath>
#include <cstdio>

#include "arcflow/evaluation/svg_plot.h"
#include "arcflow/util/text.h"

namespace arcflow::cli {

namespace {

std::string note_of(const LearntReport& r) {
  if (r.policy == "gmflow")
    return "GMFlow (pi-Flow) mixture: Gaussian components without momentum rates, so no gamma histogram; "
           "mixture weights only.";
  if (r.K == 1) return "K 1 (linear shortcut): one component with weight 1 and gamma fixed at 1; nothing learnt to show.";
  return "";
}

std::string outside(const Histogram& h) {
  const double t = h.total();
  if (!(t > 0) || h.below + h.above == 0) return "";
  return format_number(100 * h.below / t, "%.2f%%") + " below, " + format_number(100 * h.above / t, "%.2f%%") + " above the range";
}

}  // namespace

nlohmann::json learnt_json(const std::vector<LearntReport>& learnt) {
  nlohmann::json j = nlohmann::json::object();
  for (const LearntReport& r : learnt) {
    nlohmann::json e = r.stats.to_json();
    e["row"] = r.row;
    e["nfe"] = r.nfe;
    e["policy"] = r.policy;
    e["K"] = r.K;
    if (const std::string n = note_of(r); !n.empty()) e["note"] = n;
    j[r.name] = e;
  }
  return j;
}

std::string curves_html(const std::vector<TrainingCurve>& curves, const BenchmarkTable& table) {
  if (curves.empty()) return "";
  std::vector<SvgSeries> fid, mse;
  for (const TrainingCurve& c : curves) {
    SvgSeries f{c.name + " (" + std::to_string(c.nfe) + " NFE)", {}, {}}, m = f;
    for (const CurvePoint& p : c.points) {
      f.x.push_back(static_cast<double>(p.iteration));
      f.y.push_back(p.fid);
      m.x.push_back(static_cast<double>(p.iteration));
      m.y.push_back(p.endpoint_mse);
    }
    fid.push_back(std::move(f));
    mse.push_back(std::move(m));
  }
  std::string h = "<h2>Training curves</h2>\n<p>Every EMA snapshot of each run (<code>arcflow distill "
                  "--snapshot-every N</code>, RUN_DIR/snapshots) sampled at its distilled step count from the "
                  "table's noise and labels (" +
                  (curves.front().n > 0 && curves.front().n < table.n
                       ? "its first " + std::to_string(curves.front().n) + " of " + std::to_string(table.n)
                       : std::to_string(table.n)) +
                  " samples): FID against the test set's classifier features, and endpoint MSE, the end point's "
                  "per-pixel MSE to the reference row's result from the same noise.</p>\n<div>\n";
  h += svg_line_plot("FID vs iteration", "iteration", "FID", fid);
  h += svg_line_plot("Endpoint MSE vs iteration", "iteration", "endpoint MSE", mse);
  h += "</div>\n<table>\n<tr><th class=\"l\">student</th><th class=\"l\">run</th><th>iteration</th><th>fid</th>"
       "<th>endpoint_mse</th></tr>\n";
  for (const TrainingCurve& c : curves)
    for (const CurvePoint& p : c.points)
      h += "<tr><td class=\"l\">" + xml_escape(c.name) + "</td><td class=\"l\">" + xml_escape(c.run_dir) + "</td><td>" +
           std::to_string(p.iteration) + "</td><td>" + format_number(p.fid, "%.3f") + "</td><td>" +
           format_number(p.endpoint_mse, "%.5f") + "</td></tr>\n";
  return h + "</table>\n";
}

std::string velocity_profiles_html(const std::vector<VelocityProfile>& profiles) {
  if (profiles.empty()) return "";
  std::vector<SvgSeries> abs_err, rel_err;
  for (const VelocityProfile& p : profiles) {
    SvgSeries a{p.name, {}, {}}, r = a;
    for (const VelocityProfilePoint& q : p.points) {
      a.x.push_back(q.sigma);
      a.y.push_back(q.mse);
      r.x.push_back(q.sigma);
      r.y.push_back(q.teacher_ms > 0 ? q.mse / q.teacher_ms : NAN);
    }
    abs_err.push_back(std::move(a));
    rel_err.push_back(std::move(r));
  }
  std::string h = "<h2>Where the students' velocities depart from the teacher's</h2>\n<p>Along each student's own "
                  "rollout (the table's first " + std::to_string(profiles.front().n) +
                  " noises), at evenly spaced noise levels inside every step: the per-pixel mean squared difference "
                  "between the policy's velocity at the state its closed form reaches there and the guided teacher's "
                  "velocity at that state (at the guidance the student was distilled with), and the same relative to "
                  "the teacher velocity's mean square. Sampling runs from sigma 1 (right) to 0 (left).</p>\n<div>\n";
  h += svg_line_plot("velocity MSE vs sigma", "sigma", "MSE", abs_err);
  h += svg_line_plot("relative velocity MSE vs sigma", "sigma", "MSE / mean square", rel_err);
  h += "</div>\n<table>\n<tr><th class=\"l\">student</th><th>step</th><th>sigma</th><th>velocity MSE</th>"
       "<th>teacher mean square</th></tr>\n";
  for (const VelocityProfile& p : profiles)
    for (const VelocityProfilePoint& q : p.points)
      h += "<tr><td class=\"l\">" + xml_escape(p.name) + "</td><td>" + std::to_string(q.step + 1) + "</td><td>" +
           format_number(q.sigma, "%.4f") + "</td><td>" + format_number(q.mse, "%.5f") + "</td><td>" + format_number(q.teacher_ms, "%.4f") +
           "</td></tr>\n";
  return h + "</table>\n";
}

std::string learnt_html(const std::vector<LearntReport>& learnt) {
  if (learnt.empty()) return "";
  std::string h =
      "<h2>What the students learnt</h2>\n<p>For each student, over every sample and pixel of its table row, at "
      "each step: the mixture weights w<sub>k</sub> of all K components; the momentum rates as ln &gamma;<sub>k</sub> "
      "of components 1..K-1 (component 0's rate is fixed at &gamma; = 1), each counted once; and ln &gamma; weighted "
      "by w<sub>k</sub>, the rates the velocity actually uses (ln &gamma; = 0: constant velocity; &gt; 0: the "
      "velocity grows as sigma falls, &lt; 0: it fades). Bars are fractions of the total.</p>\n";
  for (const LearntReport& r : learnt) {
    h += "<h3>" + xml_escape(r.name) + "</h3>\n<p>Row " + xml_escape(r.row) + ", " + xml_escape(r.policy) + ", K " +
         std::to_string(r.K) + ", " + std::to_string(r.nfe) + " NFE.";
    if (const std::string n = note_of(r); !n.empty()) h += " " + xml_escape(n);
    h += "</p>\n";
    if (r.K == 1) continue;
    for (const StepMixtureStats& s : r.stats.steps()) {
      const std::string at = "step " + std::to_string(s.step + 1) + ", sigma " + format_number(s.sigma_src, "%.3g") + " to " +
                             format_number(s.sigma_dst, "%.3g");
      h += "<h4>" + xml_escape(r.name + ", " + at) + "</h4>\n<div>\n" +
           svg_histogram("mixture weights w", "w", s.weight.lo, s.weight.hi, s.weight.counts, outside(s.weight));
      if (s.has_gammas) {
        h += svg_histogram("ln gamma, components k >= 1", "ln gamma", s.log_gamma.lo, s.log_gamma.hi,
                           s.log_gamma.counts, outside(s.log_gamma));
        h += svg_histogram("ln gamma weighted by w", "ln gamma", s.log_gamma_weighted.lo, s.log_gamma_weighted.hi,
                           s.log_gamma_weighted.counts, outside(s.log_gamma_weighted));
      }
      h += "</div>\n<table>\n<tr><th class=\"l\">" + xml_escape(at) + "</th>";
      for (int64_t k = 0; k < s.K; ++k) h += "<th>k " + std::to_string(k) + "</th>";
      h += "</tr>\n<tr><td class=\"l\">mean w</td>";
      for (double v : s.mean_weight) h += "<td>" + format_number(v, "%.3f") + "</td>";
      h += "</tr>\n";
      if (s.has_gammas) {
        h += "<tr><td class=\"l\">mean ln &gamma;</td>";
        for (double v : s.mean_log_gamma) h += "<td>" + format_number(v, "%.2f") + "</td>";
        h += "</tr>\n";
      }
      h += "</table>\n";
    }
  }
  return h;
}

}  // namespace arcflow::cli

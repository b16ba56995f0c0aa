#include "arcflow/server/api.h"

#include "arcflow/sampling/student_sampling.h"

#include <limits>
#include <set>

namespace arcflow::server {

using nlohmann::json;

void ServerLimits::validate() const {
  if (max_n < 1) throw std::invalid_argument("--max-n must be >= 1, got " + std::to_string(max_n));
  if (max_teacher_steps < 1)
    throw std::invalid_argument("--max-teacher-steps must be >= 1, got " + std::to_string(max_teacher_steps));
  if (max_student_steps < 1)
    throw std::invalid_argument("--max-steps must be >= 1, got " + std::to_string(max_student_steps));
  if (default_teacher_steps < 1 || default_teacher_steps > max_teacher_steps)
    throw std::invalid_argument("the default teacher steps (" + std::to_string(default_teacher_steps) +
                                ") must be within 1..--max-teacher-steps (" + std::to_string(max_teacher_steps) + ")");
  if (default_n < 1 || default_n > max_n)
    throw std::invalid_argument("the default n (" + std::to_string(default_n) + ") must be within 1..--max-n (" +
                                std::to_string(max_n) + ")");
}

const AdapterInfo* ModelCatalog::find_adapter(const std::string& name) const {
  for (const AdapterInfo& a : adapters)
    if (a.name == name) return &a;
  return nullptr;
}

namespace {

std::string shown(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) {
    // Cut at a character boundary: a cut inside a multi-byte UTF-8 character made the message
    // invalid UTF-8, so the 400 could not be sent as JSON (fuzz_request regression
    // cut-inside-a-quoted-character).
    size_t cut = 57;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s = s.substr(0, cut) + "...";
  }
  return s;
}

// An integer in [lo, hi] or a RequestError naming `field`.
int64_t integer_in(const json& v, const std::string& field, int64_t lo, int64_t hi) {
  const std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (!v.is_number_integer()) throw RequestError(field, field + " must be " + range + ", got " + shown(v));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw RequestError(field, field + " must be " + range + ", got " + shown(v));
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) throw RequestError(field, field + " must be " + range + ", got " + std::to_string(x));
  return x;
}

std::string loaded_methods(const ModelCatalog& c) {
  std::string s = kTeacherMethod;
  for (const AdapterInfo& a : c.adapters) s += ", " + a.name;
  return s;
}

std::vector<std::string> parse_methods(const json& v, const ModelCatalog& c) {
  std::vector<json> items;
  if (v.is_string()) {
    items.push_back(v);
  } else if (v.is_array() && !v.empty()) {
    items.assign(v.begin(), v.end());
  } else {
    throw RequestError("method", "method must be a method name or a non-empty list of them (loaded: " +
                                     loaded_methods(c) + "), got " + shown(v));
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const json& m : items) {
    if (!m.is_string()) throw RequestError("method", "method entries must be strings, got " + shown(m));
    const std::string name = m.get<std::string>();
    if (name != kTeacherMethod && c.find_adapter(name) == nullptr)
      throw RequestError("method", "method '" + name + "' is not loaded (loaded: " + loaded_methods(c) + ")");
    if (!seen.insert(name).second) throw RequestError("method", "method '" + name + "' is given twice");
    out.push_back(name);
  }
  return out;
}

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when there is none (RFC 3629,
// table 3-7 of the Unicode standard).
size_t utf8_sequence(const std::string& s, size_t i) {
  const auto byte = [&](size_t k) { return k < s.size() ? static_cast<uint8_t>(s[k]) : 0; };
  const auto cont = [&](size_t k, uint8_t lo = 0x80, uint8_t hi = 0xBF) { return byte(k) >= lo && byte(k) <= hi; };
  const uint8_t b = byte(i);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    const bool second = b == 0xE0 ? cont(i + 1, 0xA0) : b == 0xED ? cont(i + 1, 0x80, 0x9F) : cont(i + 1);
    return second && cont(i + 2) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    const bool second = b == 0xF0 ? cont(i + 1, 0x90) : b == 0xF4 ? cont(i + 1, 0x80, 0x8F) : cont(i + 1);
    return second && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

// The key whose name or value holds the first invalid byte of `body`, or "" when that cannot be
// told: the body with every invalid byte replaced is parsed again and searched for the marker.
std::string field_with_invalid_utf8(const std::string& body) {
  std::string marked;
  for (size_t i = 0; i < body.size();) {
    const size_t n = utf8_sequence(body, i);
    marked += n ? body.substr(i, n) : "\xEF\xBF\xBD";  // U+FFFD
    i += n ? n : 1;
  }
  const json j = json::parse(marked, nullptr, false);
  if (!j.is_object()) return "";
  for (const auto& [key, value] : j.items())
    if (key.find("\xEF\xBF\xBD") != std::string::npos || value.dump().find("\xEF\xBF\xBD") != std::string::npos)
      return key;
  return "";
}

}  // namespace

size_t invalid_utf8_offset(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_sequence(text, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string::npos;
}

std::string to_valid_utf8(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_sequence(text, i);
    out += n ? text.substr(i, n) : "?";
    i += n ? n : 1;
  }
  return out;
}

GenerateRequest parse_generate_request(const std::string& body, const ModelCatalog& catalog,
                                       const ServerLimits& limits, uint64_t random_seed) {
  // Checked first: nlohmann::json refuses such bytes too, but its message quotes them, and a
  // message that is not UTF-8 cannot be sent back as JSON (issue 17: it became a 500).
  if (const size_t at = invalid_utf8_offset(body); at != std::string::npos) {
    static const char* hex = "0123456789ABCDEF";
    const auto b = static_cast<uint8_t>(body[at]);
    const std::string field = field_with_invalid_utf8(body);
    throw RequestError(field, std::string("the body is not valid UTF-8: byte 0x") + hex[b >> 4] + hex[b & 15] +
                                  " at offset " + std::to_string(at) +
                                  (field.empty() ? "" : " (in '" + field + "')") + " starts no UTF-8 character; JSON "
                                  "text must be UTF-8");
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // a syntax error, or a number too large for a double (406)
    // The message quotes the last bytes read, which may end inside a multi-byte character.
    throw RequestError("", "malformed JSON: " + to_valid_utf8(e.what()));
  }
  if (!j.is_object()) throw RequestError("", "the body must be a JSON object, got " + shown(j));
  static const std::set<std::string> known = {"class", "seed", "n", "method", "steps", "teacher_steps", "stream"};
  for (const auto& [key, value] : j.items())
    if (!known.count(key))
      throw RequestError(key, "unknown field '" + key +
                                  "' (known: class, seed, n, method, steps, teacher_steps, stream)");

  GenerateRequest r;
  r.n = limits.default_n;
  r.teacher_steps = limits.default_teacher_steps;
  if (j.contains("class") && !j["class"].is_null())
    r.cls = integer_in(j["class"], "class", 0, catalog.num_classes - 1);
  if (j.contains("seed") && !j["seed"].is_null()) {
    const json& s = j["seed"];
    if (!s.is_number_unsigned())  // nlohmann stores non-negative integer literals as unsigned
      throw RequestError("seed", "seed must be a non-negative integer (or null for a random one), got " + shown(s));
    r.seed = s.get<uint64_t>();
    r.seed_given = true;
  } else {
    r.seed = random_seed;
  }
  if (j.contains("n")) r.n = integer_in(j["n"], "n", 1, limits.max_n);
  if (j.contains("method")) {
    r.methods = parse_methods(j["method"], catalog);
  } else {
    r.methods.push_back(kTeacherMethod);
    if (!catalog.adapters.empty()) r.methods.push_back(catalog.adapters.front().name);
  }
  bool any_student = false;
  for (const std::string& m : r.methods) any_student |= m != kTeacherMethod;
  if (j.contains("steps") && !j["steps"].is_null()) {
    if (!any_student)
      throw RequestError("steps", "steps sets the students' steps and no student is requested; the teacher's are "
                                  "teacher_steps");
    r.student_steps = static_cast<int>(integer_in(j["steps"], "steps", 1, limits.max_student_steps));
  }
  if (j.contains("teacher_steps"))
    r.teacher_steps = static_cast<int>(integer_in(j["teacher_steps"], "teacher_steps", 1, limits.max_teacher_steps));
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) throw RequestError("stream", "stream must be true or false, got " + shown(j["stream"]));
    r.stream = j["stream"].get<bool>();
  }
  return r;
}

json error_json(const std::string& message, const std::string& field) {
  json j = {{"error", message}};
  if (!field.empty()) j["field"] = field;
  return j;
}

json catalog_json(const ModelCatalog& c, const ServerLimits& limits, size_t queue_capacity) {
  json adapters = json::array();
  for (const AdapterInfo& a : c.adapters)
    adapters.push_back({{"name", a.name}, {"file", a.path}, {"K", a.K}, {"nfe", a.nfe}, {"policy", a.policy},
                        {"shift", a.shift}, {"timestep_ratio", a.timestep_ratio},
                        {"temperature", a.distilled_temperature},
                        {"temperature_rule", temperature_rule(!a.temperature)}});
  return {{"teacher",
           {{"file", c.teacher_path},
            {"sampler", c.teacher_sampler},
            {"cfg_scale", c.cfg_scale},
            {"nfe_per_step", 2},
            {"default_steps", limits.default_teacher_steps}}},
          {"adapters", adapters},
          {"classes", c.class_names},
          {"image", {{"channels", c.channels}, {"height", c.image_size}, {"width", c.image_size}}},
          {"limits",
           {{"max_n", limits.max_n},
            {"max_teacher_steps", limits.max_teacher_steps},
            {"max_steps", limits.max_student_steps},
            {"default_n", limits.default_n}}},
          {"queue_capacity", queue_capacity}};
}

json result_json(const GenerateRequest& r, const ModelCatalog& c, const GenerateResult& res, double queue_ms,
                 double total_ms) {
  json results = json::array();
  for (const MethodResult& m : res.results) {
    json images = json::array();
    for (const std::string& png : m.png) images.push_back(base64_encode(png));
    results.push_back({{"method", m.method},
                       {"steps", m.steps},
                       {"nfe", m.nfe},
                       {"ms", m.ms},
                       {"ms_per_image", m.png.empty() ? 0.0 : m.ms / static_cast<double>(m.png.size())},
                       {"images", images}});
  }
  json labels = json::array();
  for (int64_t l : res.labels) labels.push_back({{"label", l}, {"name", c.class_names.at(static_cast<size_t>(l))}});
  return {{"seed", r.seed},
          {"n", r.n},
          {"class", r.cls ? json(*r.cls) : json(nullptr)},
          {"labels", labels},
          {"image_format", "png"},
          {"results", results},
          {"queue_ms", queue_ms},
          {"total_ms", total_ms}};
}

std::string sse_event(const std::string& name, const json& data) {
  return "event: " + name + "\ndata: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

json progress_json(const std::string& job, const StepProgress& p) {
  return {{"job", job}, {"method", p.method}, {"step", p.step}, {"total", p.total}, {"elapsed_ms", p.elapsed_ms}};
}

std::string base64_encode(const std::string& in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                       static_cast<uint8_t>(in[i + 2]);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace arcflow::server

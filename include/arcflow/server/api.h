// The JSON side of `arcflow serve`: what the models are (ModelCatalog, GET /v1/models), the limits
// of a request, POST /v1/generate's body parsed and checked (GenerateRequest, with RequestError
// naming the offending field) and its answer (GenerateResult). Nothing here needs torch or the HTTP
// library, so the rules can be tested on their own.
//
// POST /v1/generate body (a JSON object; unknown keys are errors):
//   "class"          integer 0..classes-1, or null/absent: the classes cycle 0, 1, ... over the images
//   "seed"           non-negative integer, or null/absent: a random one (the answer says which)
//   "n"              images, 1..limits.max_n (default 4)
//   "method"         "teacher", an adapter name, or a list of them (default ["teacher", first adapter]);
//                    every method starts from the same noise (make_noise(n, shape, seed))
//   "steps"          student steps, 1..limits.max_student_steps (default: each adapter's distilled NFE)
//   "teacher_steps"  guided Euler steps of the teacher (2 NFE each), 1..limits.max_teacher_steps
//                    (default 50 = 100 NFE)
//   "stream"         true: answer with server-sent events (progress per sampler step, then the
//                    result; see sse_event below); false/absent: one JSON answer at the end
// The body must be UTF-8 (RFC 8259); anything else is refused naming the byte and, where it can
// be told, the field.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace arcflow::server {

struct ServerLimits {
  int max_n = 16;              // images per request
  int max_teacher_steps = 200;  // teacher Euler steps (x2 NFE)
  int max_student_steps = 8;    // student steps (1 NFE each)
  int default_teacher_steps = 50;
  int default_n = 4;
  // Throws std::invalid_argument naming the limit when one is < 1 or a default is outside its limit.
  void validate() const;
};

struct AdapterInfo {
  std::string name, path;
  int64_t K = 0;     // mixture components (1: the linear baseline)
  int nfe = 2;       // steps it was distilled for
  std::string policy;  // "arcflow" or "linear" (from K)
  double shift = 1.0, timestep_ratio = 1.0;
  int total_substeps = 128;  // GMFlow students: Euler sub-steps over a trajectory
  std::optional<double> temperature{};  // as asked (serve --temperature); unset: the policy's "auto"
  double distilled_temperature = 1.0;  // the value used at its distilled nfe
};

// What is loaded: GET /v1/models, and what requests are checked against.
struct ModelCatalog {
  std::string teacher_path;
  std::string teacher_sampler = "euler";
  double cfg_scale = 4.0;  // teacher guidance (each step costs 2 NFE)
  int64_t channels = 1, image_size = 28, num_classes = 10;
  std::vector<std::string> class_names;  // num_classes entries
  std::vector<AdapterInfo> adapters;
  const AdapterInfo* find_adapter(const std::string& name) const;  // nullptr when absent
};

// A bad request: `field` names the JSON key ("" for the body as a whole).
class RequestError : public std::invalid_argument {
 public:
  RequestError(std::string field, const std::string& message)
      : std::invalid_argument(message), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

inline constexpr const char* kTeacherMethod = "teacher";

struct GenerateRequest {
  std::optional<int64_t> cls;  // empty: classes cycling
  uint64_t seed = 0;
  bool seed_given = false;
  int64_t n = 4;
  std::vector<std::string> methods;  // kTeacherMethod or adapter names, distinct, in the order given
  std::optional<int> student_steps;  // empty: each adapter's distilled nfe
  int teacher_steps = 50;
  bool stream = false;  // answer with server-sent events
};

// Where a request's generation stands after a sampler step of `method`: step (1-based) of
// `total`, and the milliseconds since that method started.
struct StepProgress {
  std::string method;
  int step = 0, total = 0;
  double elapsed_ms = 0;
};

// Parses and checks a POST /v1/generate body. Throws RequestError: malformed JSON or not an object
// (field ""), an unknown key (that key), a wrong type or a value out of range (that key, with the
// allowed range), an unknown method (listing the loaded ones). `random_seed` gives the seed when the
// body has none.
GenerateRequest parse_generate_request(const std::string& body, const ModelCatalog& catalog,
                                       const ServerLimits& limits, uint64_t random_seed);

// One method's images from a request.
struct MethodResult {
  std::string method;   // "teacher" or the adapter name
  int steps = 0, nfe = 0;
  double ms = 0;        // wall time of the sampling call (all n images)
  std::vector<std::string> png;  // one PNG file per image (bytes)
};

struct GenerateResult {
  std::vector<int64_t> labels;
  std::vector<MethodResult> results;
};

// The offset of the first byte of `text` that is not part of a well-formed UTF-8 sequence (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF), or std::string::npos when it is valid.
size_t invalid_utf8_offset(const std::string& text);
// `text` with every byte that is not part of a well-formed UTF-8 sequence replaced by '?', so that
// it can go into JSON (error messages quote what they got).
std::string to_valid_utf8(const std::string& text);

// {"error": message, "field": field} ("field" left out when empty).
nlohmann::json error_json(const std::string& message, const std::string& field = "");
// GET /v1/models.
nlohmann::json catalog_json(const ModelCatalog& catalog, const ServerLimits& limits, size_t queue_capacity);
// The answer to POST /v1/generate: request echo, labels, per method {method, steps, nfe, ms,
// ms_per_image, images: [base64 PNG...]}, queue_ms (time waiting for the worker) and total_ms.
nlohmann::json result_json(const GenerateRequest& request, const ModelCatalog& catalog, const GenerateResult& result,
                           double queue_ms, double total_ms);

// One server-sent event (text/event-stream): "event: NAME\ndata: JSON\n\n". The events of a
// streamed POST /v1/generate, in order, each with "job" (the id for DELETE /v1/jobs/ID):
//   queued    {"position": 1.., "queue_depth", "busy"}  while waiting; again when the place changes
//   started   {"queue_ms"}                                 the worker took the job
//   progress  {"method", "step", "total", "elapsed_ms"}   after every sampler step of every method
//   result    the same object as the non-streamed answer   last event on success
//   error     {"status", "error"}                           last event on failure or cancel
std::string sse_event(const std::string& name, const nlohmann::json& data);
nlohmann::json progress_json(const std::string& job, const StepProgress& p);

// Standard base64 (RFC 4648, with '=' padding).
std::string base64_encode(const std::string& bytes);

}  // namespace arcflow::server

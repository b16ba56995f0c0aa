// libFuzzer harness: the body of POST /v1/generate (`arcflow serve`), which comes from the network.
// Any malformed body must throw server::RequestError (the server answers 400 naming the field)
// whose message can be sent back as JSON (UTF-8: issue 17, a body with invalid UTF-8 was quoted in
// the message and the answer became a 500); an accepted one must respect every limit, so the
// generator never sees a request it cannot run.
#include <algorithm>

#include "arcflow/server/api.h"
#include "fuzz_util.h"

using arcflow::fuzz::violation;
namespace server = arcflow::server;

namespace {

server::ModelCatalog catalog() {
  server::ModelCatalog c;
  c.teacher_path = "teacher.safetensors";
  c.num_classes = 10;
  c.class_names = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  server::AdapterInfo a;
  a.name = "arcflow-2", a.path = "arcflow-2.safetensors", a.K = 16, a.nfe = 2, a.policy = "arcflow";
  c.adapters.push_back(a);
  a.name = "linear-2", a.path = "linear-2.safetensors", a.K = 1, a.policy = "linear";
  c.adapters.push_back(a);
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const server::ModelCatalog cat = catalog();
  static const server::ServerLimits limits;
  const std::string body(reinterpret_cast<const char*>(data), size);
  server::GenerateRequest r;
  try {
    r = server::parse_generate_request(body, cat, limits, 42);
  } catch (const server::RequestError& e) {
    try {
      (void)server::error_json(e.what(), e.field()).dump();  // strict: throws on invalid UTF-8
    } catch (const std::exception& x) {
      violation(std::string("the error cannot be sent as JSON: ") + x.what());
    }
    return 0;
  } catch (const std::exception& e) {
    violation(std::string("not a RequestError: ") + e.what());
  }
  if (r.n < 1 || r.n > limits.max_n) violation("accepted n = " + std::to_string(r.n));
  if (r.teacher_steps < 1 || r.teacher_steps > limits.max_teacher_steps)
    violation("accepted teacher_steps = " + std::to_string(r.teacher_steps));
  if (r.student_steps && (*r.student_steps < 1 || *r.student_steps > limits.max_student_steps))
    violation("accepted steps = " + std::to_string(*r.student_steps));
  if (r.cls && (*r.cls < 0 || *r.cls >= cat.num_classes)) violation("accepted class = " + std::to_string(*r.cls));
  if (r.methods.empty()) violation("accepted a request without methods");
  for (const auto& m : r.methods)
    if (m != server::kTeacherMethod && cat.find_adapter(m) == nullptr) violation("accepted method '" + m + "'");
  auto sorted = r.methods;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) violation("accepted a repeated method");
  if (!r.seed_given && r.seed != 42) violation("a request without a seed did not get the random one");
  return 0;
}

void arcflow::fuzz::write_seeds(const std::string& dir) {
  write_seed(dir, "full.json",
             R"({"class": 3, "seed": 7, "n": 2, "method": ["teacher", "arcflow-2"], "steps": 2, "teacher_steps": 10})");
  write_seed(dir, "one.json", R"({"method": "linear-2", "n": 1})");
  write_seed(dir, "nulls.json", R"({"class": null, "seed": null})");
  write_seed(dir, "bad.json", R"({"n": -1, "method": ["teacher", "teacher"], "extra": {"x": [1.5e300]}})");
  write_seed(dir, "utf8.json", "{\"method\": \"caf\xc3\xa9\", \"n\": 2, \"stream\": true}");
}

// libFuzzer harness: the model loaders on arbitrary weights files, where the metadata (model kind,
// config JSON, adapter settings) decides what gets built. The first byte picks the loader
// (0: an ArcFlow adapter onto a tiny teacher, 1: a DiT teacher, 2: the evaluation classifier), the
// rest is the file. Malformed input must throw a std::exception naming the file, never a torch
// error, a crash, or an allocation far beyond what the file holds (libFuzzer's -rss_limit_mb).
#include <c10/util/Exception.h>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/classifier/classifier.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/student.h"
#include "fuzz_util.h"
#include "tiny_models.h"

using namespace arcflow;
using arcflow::fuzz::violation;

namespace {

DiTConfig tiny_teacher_config() {
  DiTConfig c = test::tiny_dit();
  c.mlp_ratio = 2;
  return c;
}

DiT& tiny_teacher() {
  static DiT t = [] {
    torch::manual_seed(0);
    return DiT(tiny_teacher_config());
  }();
  return t;
}

ClassifierConfig tiny_classifier_config() {
  ClassifierConfig c;
  c.image_size = 8;
  c.channels = {4, 8};
  c.feature_dim = 8;
  c.num_classes = 3;
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int which = data[0] % 3;
  const std::string& path = arcflow::fuzz::write_input(data + 1, size - 1, ".safetensors");
  torch::NoGradGuard no_grad;
  try {
    if (which == 0) {
      LoRAStudent s = load_adapter(tiny_teacher().ptr(), path);
    } else if (which == 1) {
      DiT m = load_dit(path);
    } else {
      Classifier m = load_classifier(path);
    }
  } catch (const c10::Error& e) {
    violation(std::string("torch error escaped: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    if (std::string(e.what()).find(path) == std::string::npos)
      violation(std::string("error without the file name: ") + e.what());
  }
  return 0;
}

void arcflow::fuzz::write_seeds(const std::string& dir) {
  torch::manual_seed(1);
  const std::string tmp = dir + "/.tmp.safetensors";
  auto seed_from = [&](const std::string& name, char selector) {
    FILE* f = std::fopen(tmp.c_str(), "rb");
    std::string bytes(1, selector);
    char buf[4096];
    for (size_t n; f != nullptr && (n = std::fread(buf, 1, sizeof buf, f)) > 0;) bytes.append(buf, n);
    if (f != nullptr) std::fclose(f);
    std::remove(tmp.c_str());
    write_seed(dir, name, bytes);
  };
  StudentConfig sc;
  sc.K = 2;
  sc.lora.rank = 2;
  LoRAStudent student(tiny_teacher().ptr(), sc);
  save_adapter(student, tmp);
  seed_from("adapter", '\0');
  DiT teacher(tiny_teacher_config());
  save_dit(teacher, tmp);
  seed_from("teacher", '\1');
  Classifier classifier(tiny_classifier_config());
  save_classifier(classifier, tmp);
  seed_from("classifier", '\2');
}

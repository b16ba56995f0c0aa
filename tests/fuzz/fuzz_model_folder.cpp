// libFuzzer harness: the readers of a diffusers model folder (ARCFLOW.md section 7) on arbitrary
// files. The first byte picks the reader; for the two-file cases the rest is split at its first NUL
// byte (JSON holds none) into a JSON file and a safetensors file:
//   0: a transformer's config.json                       read_flux_config, then its shape table
//   1: a VAE's config.json                               read_flux_vae_config, then its shape table
//   2: a shard index + one shard                         io::SafetensorsDir::open, every tensor read
//   3: a prompts file                                    load_flux_prompt_embeddings (the tiny dev config)
//   4: a reference adapter folder (config.json + file)   load_reference_adapter onto the tiny dev teacher
//   5: a scheduler's scheduler_config.json               read_folder_shift_rule, the shift at a few sizes
// Malformed input must throw a std::exception whose message names the folder or a file in it, never
// a torch error, a crash, or an allocation beyond what the input holds (-rss_limit_mb). The seed
// corpus is the test fixtures of tests/data/flux.
#include <c10/util/Exception.h>
#include <sys/stat.h>

#include <string>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/safetensors_dir.h"
#include "arcflow/models/flux/flux.h"
#include "arcflow/models/flux/flux_loader.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/flux/flux_vae.h"
#include "arcflow/models/flux/reference_adapter.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/scheduler_config.h"
#include "fuzz_util.h"

using namespace arcflow;
using arcflow::fuzz::violation;

namespace {

const std::string kData = ARCFLOW_TEST_DATA_DIR "/flux/";
const char* const kShard = "diffusion_pytorch_model-00001-of-00001.safetensors";

// A folder of this process, emptied of what the previous input left.
const std::string& work_dir() {
  static const std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string d = std::string(base && *base ? base : "/tmp") + "/arcflow-fuzz-folder-" + std::to_string(::getpid());
    ::mkdir(d.c_str(), 0700);
    ::mkdir((d + "/scheduler").c_str(), 0700);
    return d;
  }();
  for (const char* f :
       {"config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json", kShard,
        "scheduler/scheduler_config.json"})
    std::remove((dir + "/" + f).c_str());
  return dir;
}

void write(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()))
    violation("cannot write " + path);
  std::fclose(f);
}

const FluxNetwork& tiny_teacher() {
  static const std::shared_ptr<FluxNetwork> t =
      std::dynamic_pointer_cast<FluxNetwork>(load_network(kData + "dev", torch::kCPU));
  return *t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int which = data[0] % 6;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nul = rest.find('\0');
  const std::string json = rest.substr(0, nul), file = nul == std::string::npos ? "" : rest.substr(nul + 1);
  const std::string& dir = work_dir();
  torch::NoGradGuard no_grad;
  try {
    if (which == 0) {
      write(dir + "/config.json", rest);
      const FluxConfig c = read_flux_config(dir + "/config.json");
      (void)flux_state_shapes(c);
      (void)flux_parameter_count(c);
    } else if (which == 1) {
      write(dir + "/config.json", rest);
      (void)flux_vae_state_shapes(read_flux_vae_config(dir + "/config.json"));
    } else if (which == 2) {
      write(dir + "/diffusion_pytorch_model.safetensors.index.json", json);
      write(dir + "/" + kShard, file);
      const io::SafetensorsDir d = io::SafetensorsDir::open(dir);
      for (const auto& [name, t] : d.tensors()) (void)d.read(name);
    } else if (which == 3) {
      write(dir + "/diffusion_pytorch_model.safetensors", rest);
      (void)load_flux_prompt_embeddings(dir + "/diffusion_pytorch_model.safetensors",
                                        tiny_teacher().transformer->config);
    } else if (which == 5) {
      write(dir + "/scheduler/scheduler_config.json", rest);
      const ShiftRule r = read_folder_shift_rule(dir);
      for (int64_t n : {int64_t{1}, int64_t{256}, int64_t{4096}, int64_t{1} << 40}) (void)r.at(n);
      (void)r.describe();
    } else {
      write(dir + "/config.json", json);
      write(dir + "/diffusion_pytorch_model.safetensors", file);
      static const NetworkPtr teacher = load_network(kData + "dev", torch::kCPU);
      (void)load_reference_adapter(teacher, dir);
    }
  } catch (const c10::Error& e) {
    violation(std::string("torch error escaped: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    if (std::string(e.what()).find(dir) == std::string::npos)
      violation(std::string("error without the folder's name: ") + e.what());
  }
  return 0;
}

void arcflow::fuzz::write_seeds(const std::string& dir) {
  const auto seed = [&](const std::string& name, char selector, const std::string& a, const std::string* b = nullptr) {
    std::string bytes(1, selector);
    bytes += a;
    if (b != nullptr) bytes += std::string(1, '\0') + *b;
    write_seed(dir, name, bytes);
  };
  seed("transformer-config-dev", '\0', io::read_file(kData + "dev/transformer/config.json"));
  seed("transformer-config-schnell", '\0', io::read_file(kData + "schnell/transformer/config.json"));
  seed("vae-config", '\1', io::read_file(kData + "dev/vae/config.json"));
  // An index over the prompts fixture as its one shard (small, two tensors).
  const std::string prompts = io::read_file(kData + "prompts.safetensors");
  const std::string index = std::string("{\"metadata\": {\"total_size\": 0}, \"weight_map\": {\"prompt_embeds\": \"") +
                            kShard + "\", \"pooled_prompt_embeds\": \"" + kShard + "\"}}";
  seed("shard-index", '\2', index, &prompts);
  seed("prompts", '\3', prompts);
  const std::string adapter = io::read_file(kData + "arcflow-adapter/diffusion_pytorch_model.safetensors");
  seed("reference-adapter", '\4', io::read_file(kData + "arcflow-adapter/config.json"), &adapter);
  seed("scheduler-config-dev", '\5',
       R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,)"
       R"( "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,)"
       R"( "use_dynamic_shifting": true})");
  seed("scheduler-config-qwen", '\5',
       R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,)"
       R"( "max_image_seq_len": 8192, "max_shift": 0.9, "shift": 1.0, "shift_terminal": 0.02,)"
       R"( "time_shift_type": "exponential", "use_dynamic_shifting": true})");
}

// FluxNetwork's class prompts (models/flux_network.h): a FLUX-architecture network conditioned on
// class labels through a fixed table of prompt embeddings, one row per class and a last row for the
// null class. This is how `arcflow train-teacher --arch flux` runs the FLUX transformer on
// Fashion-MNIST: the table stands in for the text encoder, so the transformer, its LoRA targets and
// the student heads are exactly FLUX's, and sampling, distillation and evaluation reach it through
// labels like the DiT. The table and the sample size travel in the weights file's metadata.
#include <ATen/CPUGeneratorImpl.h>

#include <limits>
#include <stdexcept>

#include "arcflow/models/flux_network.h"

namespace arcflow {
namespace {

// A float32 CPU tensor as {"shape": [...], "data": [...]} (doubles print shortest round-trip, so
// the values come back bit for bit).
nlohmann::json tensor_json(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kFloat32).contiguous();
  const float* p = c.data_ptr<float>();
  return {{"shape", c.sizes().vec()}, {"data", std::vector<float>(p, p + c.numel())}};
}

torch::Tensor json_tensor(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object() || !j.contains("shape") || !j.contains("data"))
    throw std::invalid_argument(what + " must be {\"shape\": [...], \"data\": [...]}");
  const auto shape = j.at("shape").get<std::vector<int64_t>>();
  const auto data = j.at("data").get<std::vector<float>>();
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument(what + ": negative size in its shape");
    if (d > 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw std::invalid_argument(what + ": its shape holds more values than can be counted");
    n *= d;
  }
  if (n != static_cast<int64_t>(data.size()))
    throw std::invalid_argument(what + ": shape holds " + std::to_string(n) + " values, data has " +
                                std::to_string(data.size()));
  return torch::tensor(data, torch::kFloat32).reshape(shape);
}

}  // namespace

void FluxNetwork::set_class_prompts(const FluxPromptEmbeddings& table) {
  const FluxConfig& cfg = transformer->config;
  if (table.size() < 2 || table.prompt_embeds.dim() != 3 || table.prompt_embeds.size(1) < 1 ||
      table.prompt_embeds.size(2) != cfg.joint_attention_dim)
    throw std::invalid_argument("FLUX class prompts: prompt_embeds must be (classes + 1 >= 2, L >= 1, " +
                                std::to_string(cfg.joint_attention_dim) + ")");
  if (!table.pooled_prompt_embeds.defined() || table.pooled_prompt_embeds.dim() != 2 ||
      table.pooled_prompt_embeds.size(0) != table.size() ||
      table.pooled_prompt_embeds.size(1) != cfg.pooled_projection_dim)
    throw std::invalid_argument("FLUX class prompts: pooled_prompt_embeds must be (" + std::to_string(table.size()) +
                                ", " + std::to_string(cfg.pooled_projection_dim) + ")");
  if (!table.prompts.empty() && static_cast<int64_t>(table.prompts.size()) != table.size())
    throw std::invalid_argument("FLUX class prompts: " + std::to_string(table.prompts.size()) + " names for " +
                                std::to_string(table.size()) + " rows");
  classes_.prompt_embeds = table.prompt_embeds.to(torch::kCPU, torch::kFloat32).contiguous();
  classes_.pooled_prompt_embeds = table.pooled_prompt_embeds.to(torch::kCPU, torch::kFloat32).contiguous();
  classes_.prompts = table.prompts;
  text_tokens_ = classes_.prompt_embeds.size(1);
}

void FluxNetwork::check_class_condition(const Condition& c, int64_t batch) const {
  if (classes_.size() == 0)
    throw std::invalid_argument("FLUX: unknown condition key 'labels' (this model has no class prompts: condition it "
                                "on prompt embeddings, --prompts)");
  const torch::Tensor& y = c.at("labels");
  if (y.dim() != 1 || y.size(0) != batch || y.scalar_type() != torch::kLong)
    throw std::invalid_argument("FLUX: labels must be (" + std::to_string(batch) + ") int64, got " +
                                c10::str(y.sizes()) + " " + std::string(c10::toString(y.scalar_type())));
  if (batch > 0 && (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() > num_classes()))
    throw std::invalid_argument("FLUX: labels must lie in 0.." + std::to_string(num_classes()) + " (" +
                                std::to_string(num_classes()) + " = null class)");
  for (const auto& [key, t] : c.tensors()) {
    if (key == "labels" || (key == "guidance" && transformer->config.guidance_embeds)) continue;
    throw std::invalid_argument("FLUX: condition key '" + key + "' next to labels (allowed: labels" +
                                (transformer->config.guidance_embeds ? ", guidance)" : ")"));
  }
  if (transformer->config.guidance_embeds && !c.has("guidance"))
    throw std::invalid_argument("FLUX: the condition lacks 'guidance' (this model embeds distilled guidance)");
}

Condition FluxNetwork::class_prompt_condition(const Condition& c) const {
  const torch::Tensor rows = c.at("labels").to(torch::kCPU);
  Condition out;
  out.set("prompt_embeds", classes_.prompt_embeds.index_select(0, rows));
  out.set("pooled_prompt_embeds", classes_.pooled_prompt_embeds.index_select(0, rows));
  if (c.has("guidance")) out.set("guidance", c.at("guidance"));
  return out;
}

Condition FluxNetwork::null_condition(const Condition& c) const {
  if (classes_.size() == 0) return Network::null_condition(c);  // throws: no null prompt
  const int64_t B = c.batch();
  if (c.has("labels")) {
    Condition out = Condition::labels(torch::full_like(c.at("labels"), num_classes()));
    if (c.has("guidance")) out.set("guidance", c.at("guidance"));
    return out;
  }
  // Prompt embeddings (e.g. from the class-prompts file): the null row, as many times.
  const torch::Tensor p = c.at("prompt_embeds");
  if (p.dim() != 3 || p.size(1) != classes_.prompt_embeds.size(1))
    throw std::invalid_argument("FLUX: prompts of " + std::to_string(p.dim() == 3 ? p.size(1) : -1) +
                                " tokens have no null condition (the class prompts have " +
                                std::to_string(classes_.prompt_embeds.size(1)) + ")");
  const int64_t last = classes_.size() - 1;
  Condition out;
  out.set("prompt_embeds", classes_.prompt_embeds[last].expand({B, -1, -1}).to(p.device(), p.scalar_type()));
  out.set("pooled_prompt_embeds", classes_.pooled_prompt_embeds[last].expand({B, -1}).to(p.device(), p.scalar_type()));
  if (c.has("guidance")) out.set("guidance", c.at("guidance"));
  return out;
}

io::Metadata FluxNetwork::extra_metadata() const {
  io::Metadata m;
  m["sample_size"] = nlohmann::json{h_, w_}.dump();
  if (classes_.size() > 0)
    m["class_prompts"] = nlohmann::json{{"prompts", classes_.prompts},
                                        {"prompt_embeds", tensor_json(classes_.prompt_embeds)},
                                        {"pooled_prompt_embeds", tensor_json(classes_.pooled_prompt_embeds)}}
                             .dump();
  return m;
}

void FluxNetwork::read_extra_metadata(const io::Metadata& meta, const std::string& path) {
  const auto size = meta.find("sample_size");
  if (size != meta.end()) {
    try {
      const auto hw = nlohmann::json::parse(size->second).get<std::vector<int64_t>>();
      if (hw.size() != 2) throw std::invalid_argument("not [height, width]");
      set_latent_size(hw[0], hw[1]);
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": metadata sample_size: " + e.what());
    }
  }
  const auto cp = meta.find("class_prompts");
  if (cp == meta.end()) return;
  try {
    const nlohmann::json j = nlohmann::json::parse(cp->second);
    FluxPromptEmbeddings t;
    t.prompt_embeds = json_tensor(j.at("prompt_embeds"), "prompt_embeds");
    t.pooled_prompt_embeds = json_tensor(j.at("pooled_prompt_embeds"), "pooled_prompt_embeds");
    if (j.contains("prompts")) t.prompts = j.at("prompts").get<std::vector<std::string>>();
    set_class_prompts(t);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": metadata class_prompts: " + e.what());
  }
}

FluxPromptEmbeddings make_class_prompts(const FluxConfig& cfg, const std::vector<std::string>& names, int64_t tokens,
                                        uint64_t seed) {
  if (names.empty()) throw std::invalid_argument("class prompts: no classes");
  if (tokens < 1) throw std::invalid_argument("class prompts: tokens must be >= 1");
  const int64_t n = static_cast<int64_t>(names.size());
  auto gen = at::detail::createCPUGenerator(seed);
  FluxPromptEmbeddings t;
  t.prompt_embeds = torch::zeros({n + 1, tokens, cfg.joint_attention_dim});
  t.pooled_prompt_embeds = torch::zeros({n + 1, cfg.pooled_projection_dim});
  t.prompt_embeds.narrow(0, 0, n).copy_(torch::randn({n, tokens, cfg.joint_attention_dim}, gen, torch::kFloat32));
  t.pooled_prompt_embeds.narrow(0, 0, n).copy_(torch::randn({n, cfg.pooled_projection_dim}, gen, torch::kFloat32));
  t.prompts = names;
  t.prompts.push_back("");
  return t;
}

}  // namespace arcflow

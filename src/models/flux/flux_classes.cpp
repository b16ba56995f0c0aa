// FluxNetwork's class prompts (models/flux/flux_network.h): a FLUX-architecture network conditioned on
// class labels through a fixed table of prompt embeddings, one row per class and a last row for the
// null class. This is how `arcflow train-teacher --arch flux` runs the FLUX transformer on
// Fashion-MNIST: the table stands in for the text encoder, so the transformer, its LoRA targets and
// the student heads are exactly FLUX's, and sampling, distillation and evaluation reach it through
// labels like the DiT. The table and the sample size travel in the weights file's metadata.
#include <ATen/CPUGeneratorImpl.h>

#include <limits>
#include <stdexcept>

#include "arcflow/models/flux/flux_network.h"

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

namespace {
void require(bool ok, const std::string& field, const std::string& what) {
  if (!ok) throw std::invalid_argument("teacher config: " + field + " " + what);
}
}  // namespace

void FluxTeacherModel::validate() const {
  transformer.validate();
  require(num_classes >= 1, "flux.num_classes", "must be >= 1");
  require(class_names.empty() || static_cast<int64_t>(class_names.size()) == num_classes, "flux.class_names",
          "must name every class");
  require(prompt_tokens >= 1, "flux.prompt_tokens", "must be >= 1");
  require(!transformer.guidance_embeds, "flux.guidance_embeds",
          "must be false (the teacher learns classifier-free guidance through the null class)");
  require(transformer.patch_size == 1, "flux.patch_size", "must be 1 (pixels are packed 2x2 into tokens)");
  require(transformer.in_channels % 4 == 0, "flux.in_channels", "must be 4 x the image channels");
  require(transformer.output_channels() == transformer.in_channels, "flux.out_channels", "must equal in_channels");
}

nlohmann::json FluxTeacherModel::to_json() const {
  return {{"transformer", transformer.to_json()}, {"num_classes", num_classes}, {"class_names", names()},
          {"prompt_tokens", prompt_tokens}, {"prompt_seed", prompt_seed}};
}

FluxTeacherModel FluxTeacherModel::from_json(const nlohmann::json& j) {
  require(j.is_object(), "flux", "must be a JSON object, got " + j.dump());
  for (const auto& item : j.items())
    require(item.key() == "transformer" || item.key() == "num_classes" || item.key() == "class_names" ||
                item.key() == "prompt_tokens" || item.key() == "prompt_seed",
            "flux." + item.key(), "is not a field (transformer, num_classes, class_names, prompt_tokens, prompt_seed)");
  require(j.contains("transformer"), "flux.transformer", "is missing");
  FluxTeacherModel m;
  m.transformer = FluxConfig::from_json(j["transformer"]);
  const auto integer = [&](const char* key, int64_t fallback) {
    if (!j.contains(key)) return fallback;
    require(j[key].is_number_integer(), std::string("flux.") + key, "must be an integer, got " + j[key].dump());
    return j[key].get<int64_t>();
  };
  m.num_classes = integer("num_classes", m.num_classes);
  m.prompt_tokens = integer("prompt_tokens", m.prompt_tokens);
  if (j.contains("prompt_seed")) {
    require(j["prompt_seed"].is_number_unsigned(), "flux.prompt_seed", "must be an integer >= 0");
    m.prompt_seed = j["prompt_seed"].get<uint64_t>();
  }
  if (j.contains("class_names")) {
    require(j["class_names"].is_array(), "flux.class_names", "must be an array of strings");
    for (const auto& n : j["class_names"]) {
      require(n.is_string(), "flux.class_names", "must be an array of strings");
      m.class_names.push_back(n.get<std::string>());
    }
  }
  m.validate();
  return m;
}

std::vector<std::string> FluxTeacherModel::names() const {
  if (!class_names.empty()) return class_names;
  std::vector<std::string> n;
  for (int64_t i = 0; i < num_classes; ++i) n.push_back("class " + std::to_string(i));
  return n;
}

std::string FluxNetwork::summary() const {
  const FluxConfig& f = transformer->config;
  return "FLUX: " + std::to_string(f.num_layers) + " double + " + std::to_string(f.num_single_layers) +
         " single blocks, " + std::to_string(f.num_attention_heads) + " heads x " +
         std::to_string(f.attention_head_dim) + ", " + std::to_string(image_tokens()) + " image tokens, " +
         std::to_string(classes_.size() > 0 ? classes_.prompt_embeds.size(1) : text_tokens_) + " prompt tokens";
}

void FluxNetwork::save_companions(const std::string& dir) const {
  if (classes_.size() > 0) save_flux_prompt_embeddings(dir + "/class-prompts.safetensors", classes_);
}

nlohmann::json flux_image_teacher_config(const nlohmann::json& config) {
  return FluxTeacherModel::from_json(config).to_json();
}

NetworkPtr create_flux_image_teacher(const nlohmann::json& config, const std::vector<int64_t>& image_shape) {
  const FluxTeacherModel m = FluxTeacherModel::from_json(config);
  const FluxConfig& f = m.transformer;
  if (image_shape.size() != 3 || image_shape[0] * 4 != f.in_channels || image_shape[1] % 2 != 0 ||
      image_shape[2] % 2 != 0) {
    std::string got;
    for (int64_t d : image_shape) got += ", " + std::to_string(d);
    throw std::invalid_argument("teacher training: a FLUX transformer with in_channels " +
                                std::to_string(f.in_channels) + " takes images of " +
                                std::to_string(f.in_channels / 4) + " channel(s) (packed 2x2) and even sides, got (N" +
                                got + ")");
  }
  auto net = std::make_shared<FluxNetwork>(FluxTransformer(f), image_shape[1], image_shape[2]);
  net->set_class_prompts(make_class_prompts(f, m.names(), m.prompt_tokens, m.prompt_seed));
  return net;
}

}  // namespace arcflow

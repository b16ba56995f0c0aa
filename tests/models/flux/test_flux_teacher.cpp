// The FLUX-architecture teacher on a labelled data set (train-teacher --arch flux): class labels
// stand for fixed prompt embeddings, the last row is the null class for classifier-free guidance,
// the table travels in the weights file, and teacher training works on the FLUX transformer
// (resume exact, loss falls, bad input refused).
#include <gtest/gtest.h>

#include <fstream>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/weights.h"
#include "arcflow/training/teacher.h"
#include "teacher_test_util.h"
#include "temp_dir.h"
#include "tiny_models.h"

using namespace arcflow;

namespace {

FluxConfig tiny_flux() {
  FluxConfig c;
  c.in_channels = 4;  // 1-channel images, 2x2 packing
  c.num_layers = 1;
  c.num_single_layers = 1;
  c.attention_head_dim = 8;
  c.num_attention_heads = 2;
  c.joint_attention_dim = 12;
  c.pooled_projection_dim = 6;
  c.guidance_embeds = false;
  c.axes_dims_rope = {2, 2, 4};
  return c;
}

std::shared_ptr<FluxNetwork> class_net(uint64_t seed = 3) {
  torch::manual_seed(1);
  auto net = std::make_shared<FluxNetwork>(FluxTransformer(tiny_flux()), 8, 6);
  net->set_class_prompts(make_class_prompts(tiny_flux(), {"a", "b", "c"}, 2, seed));
  net->module().eval();
  return net;
}

TeacherTrainConfig flux_train_config() {
  TeacherTrainConfig c;
  c.arch = "flux";
  FluxTeacherModel m;
  m.transformer = tiny_flux();
  m.num_classes = 3;
  m.prompt_tokens = 2;
  c.model = m;
  c.batch_size = 4;
  c.warmup_iters = 2;
  c.lr = 1e-3;
  c.iters = 100;
  c.seed = 5;
  return c;
}

}  // namespace

TEST(FluxClasses, TableHasTheClassesThenAZeroNullRow) {
  const FluxPromptEmbeddings t = make_class_prompts(tiny_flux(), {"a", "b", "c"}, 2, 3);
  EXPECT_EQ(t.prompt_embeds.sizes().vec(), (std::vector<int64_t>{4, 2, 12}));
  EXPECT_EQ(t.pooled_prompt_embeds.sizes().vec(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(t.prompts, (std::vector<std::string>{"a", "b", "c", ""}));
  EXPECT_EQ(t.prompt_embeds[3].abs().max().item<float>(), 0.0f);
  EXPECT_EQ(t.pooled_prompt_embeds[3].abs().max().item<float>(), 0.0f);
  EXPECT_GT(t.prompt_embeds[0].std().item<float>(), 0.5f);  // N(0, 1) rows, distinct per class
  EXPECT_FALSE(torch::equal(t.prompt_embeds[0], t.prompt_embeds[1]));
  EXPECT_TRUE(torch::equal(t.prompt_embeds, make_class_prompts(tiny_flux(), {"a", "b", "c"}, 2, 3).prompt_embeds));
  EXPECT_FALSE(torch::equal(t.prompt_embeds, make_class_prompts(tiny_flux(), {"a", "b", "c"}, 2, 4).prompt_embeds));
}

TEST(FluxClasses, LabelsAreTheirPromptRows) {
  torch::NoGradGuard g;
  auto net = class_net();
  EXPECT_EQ(net->num_classes(), 3);
  EXPECT_TRUE(net->has_null_condition());
  const torch::Tensor x = torch::randn({3, 1, 8, 6}), sigma = torch::tensor({0.2f, 0.5f, 0.9f});
  const torch::Tensor y = torch::tensor({2, 0, 3}, torch::kLong);
  const FluxPromptEmbeddings& t = net->class_prompts();
  // The prompts by hand: rows 2, 0 and the null row 3, straight into the transformer.
  Condition prompts;
  prompts.set("prompt_embeds", torch::stack({t.prompt_embeds[2], t.prompt_embeds[0], t.prompt_embeds[3]}));
  prompts.set("pooled_prompt_embeds",
              torch::stack({t.pooled_prompt_embeds[2], t.pooled_prompt_embeds[0], t.pooled_prompt_embeds[3]}));
  const torch::Tensor by_label = net->velocity(x, sigma, Condition::labels(y));
  const torch::Tensor by_prompt = net->velocity(x, sigma, prompts);
  EXPECT_EQ((by_label - by_prompt).abs().max().item<float>(), 0.0f);
  // Another class gives another velocity (the labels are read).
  const torch::Tensor other = net->velocity(x, sigma, Condition::labels(torch::tensor({1, 1, 1}, torch::kLong)));
  EXPECT_GT((other - by_label).abs().max().item<float>(), 1e-4f);
}

TEST(FluxClasses, GuidanceUsesTheNullRow) {
  torch::NoGradGuard g;
  auto net = class_net();
  const torch::Tensor x = torch::randn({2, 1, 8, 6}), sigma = torch::tensor({0.3f, 0.7f});
  const Condition c = Condition::labels(torch::tensor({0, 2}, torch::kLong));
  const torch::Tensor u_c = net->velocity(x, sigma, c);
  const torch::Tensor u_0 = net->velocity(x, sigma, Condition::labels(torch::tensor({3, 3}, torch::kLong)));
  GuidedTeacher guided(net, 2.5);
  EXPECT_EQ(guided.nfe_per_call(), 2);
  const torch::Tensor want = u_0 + 2.5 * (u_c - u_0);
  EXPECT_LT((guided.velocity(x, sigma, c) - want).abs().max().item<float>(), 1e-5f);
  // Prompt conditions get the null row too.
  const FluxPromptEmbeddings& t = net->class_prompts();
  Condition p;
  p.set("prompt_embeds", t.prompt_embeds.narrow(0, 0, 2));
  p.set("pooled_prompt_embeds", t.pooled_prompt_embeds.narrow(0, 0, 2));
  const Condition null = net->null_condition(p);
  EXPECT_EQ(null.at("prompt_embeds").abs().max().item<float>(), 0.0f);
  EXPECT_EQ(null.at("prompt_embeds").sizes().vec(), (std::vector<int64_t>{2, 2, 12}));
}

TEST(FluxClasses, LabelConditionsAreChecked) {
  auto net = class_net();
  EXPECT_THROW(net->check_condition(Condition::labels(torch::tensor({4}, torch::kLong)), 1), std::invalid_argument);
  EXPECT_THROW(net->check_condition(Condition::labels(torch::tensor({1.0f})), 1), std::invalid_argument);
  Condition extra = Condition::labels(torch::tensor({1}, torch::kLong));
  extra.set("guidance", torch::tensor({3.5f}));  // no guidance embedding in this config
  EXPECT_THROW(net->check_condition(extra, 1), std::invalid_argument);
  auto plain = std::make_shared<FluxNetwork>(FluxTransformer(tiny_flux()), 8, 6);
  EXPECT_FALSE(plain->has_null_condition());
  EXPECT_THROW(plain->check_condition(Condition::labels(torch::tensor({0}, torch::kLong)), 1), std::invalid_argument);
  EXPECT_THROW(GuidedTeacher(plain, 2.0), std::invalid_argument);
  // A table of the wrong width.
  FluxConfig wide = tiny_flux();
  wide.joint_attention_dim = 16;
  EXPECT_THROW(plain->set_class_prompts(make_class_prompts(wide, {"a"}, 2, 0)), std::invalid_argument);
}

TEST(FluxClasses, TheTableAndSampleSizeTravelInTheWeightsFile) {
  arcflow::test::TempDir dir;
  torch::NoGradGuard g;
  auto net = class_net();
  const std::string path = dir.file("teacher.safetensors");
  save_network(*net, path);
  NetworkPtr back = load_network(path);
  auto* f = dynamic_cast<FluxNetwork*>(back.get());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->sample_shape(), (std::vector<int64_t>{1, 8, 6}));
  EXPECT_EQ(f->num_classes(), 3);
  EXPECT_TRUE(torch::equal(f->class_prompts().prompt_embeds, net->class_prompts().prompt_embeds));
  EXPECT_TRUE(torch::equal(f->class_prompts().pooled_prompt_embeds, net->class_prompts().pooled_prompt_embeds));
  EXPECT_EQ(f->class_prompts().prompts, net->class_prompts().prompts);
  const torch::Tensor x = torch::randn({2, 1, 8, 6}), sigma = torch::tensor({0.4f, 0.6f});
  const Condition c = Condition::labels(torch::tensor({1, 2}, torch::kLong));
  back->module().eval();
  EXPECT_EQ((back->velocity(x, sigma, c) - net->velocity(x, sigma, c)).abs().max().item<float>(), 0.0f);
  // A copy keeps the table.
  EXPECT_EQ(back->copy_network()->num_classes(), 3);

  // A damaged table is refused with the file's name.
  io::SafetensorsFile file = io::load_safetensors(path);
  nlohmann::json j = nlohmann::json::parse(file.metadata.at("class_prompts"));
  j["prompt_embeds"]["data"].erase(0);
  file.metadata["class_prompts"] = j.dump();
  const std::string bad = dir.file("bad.safetensors");
  io::save_safetensors(bad, file.tensors, file.metadata);
  try {
    load_network(bad);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("class_prompts"), std::string::npos) << msg;
  }
}

TEST(FluxTeacherTraining, ResumeGivesTheSameLosses) {
  arcflow::test::TempDir dir;
  torch::manual_seed(11);
  const torch::Tensor images = torch::rand({12, 1, 8, 6}) * 2 - 1, labels = torch::arange(12, torch::kLong) % 3;
  TeacherTrainer a(flux_train_config(), images, labels, torch::kCPU);
  EXPECT_EQ(a.model()->kind(), "flux");
  EXPECT_EQ(a.model()->num_classes(), 3);
  std::vector<double> full;
  for (int i = 0; i < 4; ++i) full.push_back(a.step().loss);
  TeacherTrainer b(flux_train_config(), images, labels, torch::kCPU);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(b.step().loss, full[i]);
  save_checkpoint(dir.file("c.safetensors"), b.checkpoint());
  TeacherTrainConfig other = flux_train_config();
  other.seed = 99;
  TeacherTrainer c(other, images, labels, torch::kCPU);
  c.restore(load_checkpoint(dir.file("c.safetensors")), "c.safetensors");
  for (int i = 2; i < 4; ++i) EXPECT_EQ(c.step().loss, full[i]) << "step " << i + 1;
  // A DiT run's checkpoint is not a FLUX run's.
  TeacherTrainConfig dit;
  dit.model = test::tiny_dit();
  TeacherTrainer d(dit, images.narrow(3, 0, 4).repeat({1, 1, 1, 2}), labels, torch::kCPU);
  EXPECT_THROW(d.restore(c.checkpoint(), "c.safetensors"), std::runtime_error);
}

TEST(FluxTeacherTraining, LossFallsOnALearnableDataSet) {
  // Every image of class k is the constant (k - 1) / 2: the velocity is learnable exactly.
  const torch::Tensor labels = torch::arange(30, torch::kLong) % 3;
  const torch::Tensor images = ((labels.to(torch::kFloat32) - 1) / 2).view({30, 1, 1, 1}).expand({30, 1, 8, 6});
  TeacherTrainConfig c = flux_train_config();
  c.batch_size = 16;
  c.lr = 3e-3;
  c.warmup_iters = 5;
  TeacherTrainer a(c, images.contiguous(), labels, torch::kCPU);
  const test::LossEnds l = test::train_loss_ends(a, 120);
  EXPECT_LT(l.last, 0.5 * l.first) << l.first << " -> " << l.last;
}

TEST(FluxTeacherTraining, BadInputsAreRejected) {
  torch::manual_seed(11);
  const torch::Tensor images = torch::rand({6, 1, 8, 6}), labels = torch::arange(6, torch::kLong) % 3;
  // Two-channel images for a 1-channel (in_channels 4) transformer; odd sides; a guidance embedding.
  EXPECT_THROW(TeacherTrainer(flux_train_config(), images.repeat({1, 2, 1, 1}), labels, torch::kCPU),
               std::invalid_argument);
  EXPECT_THROW(TeacherTrainer(flux_train_config(), images.narrow(2, 0, 7), labels, torch::kCPU),
               std::invalid_argument);
  TeacherTrainConfig g = flux_train_config();
  g.model["transformer"]["guidance_embeds"] = true;
  EXPECT_THROW(g.validate(), std::invalid_argument);
  TeacherTrainConfig a = flux_train_config();
  a.arch = "unet";
  EXPECT_THROW(a.validate(), std::invalid_argument);
  EXPECT_THROW(TeacherTrainer(flux_train_config(), images, labels + 3, torch::kCPU), std::invalid_argument);
}

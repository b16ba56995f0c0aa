// `arcflow train-teacher`: flow-matching training of a class-conditional teacher on Fashion-MNIST
// (the DiT, or with --arch flux a FLUX transformer whose class "prompts" are fixed embeddings),
// with checkpoints (every N steps, on Ctrl-C/SIGTERM and at a time limit), resume, EMA weights and a
// JSONL log. Output folder layout:
//   DIR/checkpoint.safetensors   everything needed to resume (weights, EMA, optimizer, RNG, step)
//   DIR/teacher.safetensors      the EMA weights as a self-describing file (what `sample` loads)
//   DIR/class-prompts.safetensors  --arch flux: the class prompts (a prompt-embeddings file, last row null)
//   DIR/train.jsonl              one JSON object per logged step
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/idx.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/flux/flux_loader.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/weights.h"
#include "arcflow/training/teacher.h"
#include "arcflow/util/progress.h"
#include "commands.h"
#include "config_file.h"
#include "training_run.h"

namespace arcflow::cli {

namespace {

struct TeacherOptions {
  TeacherTrainConfig cfg;  // cfg.model is set from the flags of cfg.arch (arch_configs)
  DiTConfig dit;            // --arch dit: the DiT flags
  FluxTeacherModel flux;    // --arch flux: --prompt-tokens, --prompt-seed
  std::string flux_config;  // --arch flux: the transformer's config.json
  std::string output = "runs/teacher";
  std::string data_dir = io::kFashionMnistDir;
  bool resume = false;
  int64_t checkpoint_every = 250;
  int64_t log_every = 10;
  double time_limit_min = 0;  // 0: none
  int64_t limit_train = 0;    // 0: all 60000 training images
  bool quiet = false;
  DistFlags dist_flags;       // data parallel
};

void add_flags(CLI::App* sub, TeacherOptions& o) {
  TeacherTrainConfig& c = o.cfg;
  add_config_option(sub);
  sub->add_option("-o,--output", o.output, "Run folder: checkpoint.safetensors, teacher.safetensors, train.jsonl")
      ->capture_default_str();
  sub->add_flag("--resume", o.resume, "Continue from OUTPUT/checkpoint.safetensors (same model config)");
  sub->add_option("--data-dir", o.data_dir, "Folder with the Fashion-MNIST IDX files")->capture_default_str();
  sub->add_option("--limit-train", o.limit_train, "Use only the first N training images (0: all)")
      ->check(CLI::NonNegativeNumber);
  // Model.
  sub->add_option("--arch", c.arch,
                  "Architecture: dit (the DiT flags below) or flux (a FLUX transformer from --flux-config; "
                  "pixels packed 2x2, each class's prompt a fixed random embedding)")
      ->check(CLI::IsMember({"dit", "flux"}))
      ->capture_default_str();
  sub->add_option("--flux-config", o.flux_config,
                  "--arch flux: the transformer's config.json (diffusers keys; in_channels 4 for 1-channel images, "
                  "guidance_embeds false), e.g. configs/flux/fashion-teacher.json");
  sub->add_option("--prompt-tokens", o.flux.prompt_tokens, "--arch flux: text tokens per class prompt")
      ->capture_default_str();
  sub->add_option("--prompt-seed", o.flux.prompt_seed, "--arch flux: seed of the class prompts' random embeddings")
      ->capture_default_str();
  sub->add_option("--patch", o.dit.patch, "DiT patch size (28 must be divisible by it)")->capture_default_str();
  sub->add_option("--width", o.dit.width, "DiT width D")->capture_default_str();
  sub->add_option("--depth", o.dit.depth, "Number of DiT blocks")->capture_default_str();
  sub->add_option("--heads", o.dit.heads, "Attention heads (must divide the width)")->capture_default_str();
  sub->add_option("--mlp-ratio", o.dit.mlp_ratio, "MLP hidden size / width")->capture_default_str();
  // Optimisation.
  sub->add_option("--iters", c.iters, "Total optimizer steps (a resumed run continues up to this)")
      ->capture_default_str();
  sub->add_option("--batch", c.batch_size, "Batch size (per process when data-parallel)")->capture_default_str();
  sub->add_option("--lr", c.lr, "AdamW learning rate after warm-up")->capture_default_str();
  sub->add_option("--beta1", c.beta1, "AdamW beta1")->capture_default_str();
  sub->add_option("--beta2", c.beta2, "AdamW beta2")->capture_default_str();
  sub->add_option("--weight-decay", c.weight_decay, "AdamW weight decay")->capture_default_str();
  sub->add_option("--warmup-iters", c.warmup_iters, "Linear learning-rate warm-up steps")->capture_default_str();
  sub->add_option("--grad-clip", c.grad_clip, "Gradient-norm clip (0: none)")->capture_default_str();
  sub->add_option("--ema-decay", c.ema_decay, "EMA decay (beta_t = min(decay, (1+t)/(10+t)))")
      ->capture_default_str();
  sub->add_option("--class-dropout", c.class_dropout, "Probability of training on the null class (for CFG)")
      ->capture_default_str();
  sub->add_option("--shift", c.shift, "Schedule shift of the training noise levels")->capture_default_str();
  sub->add_option("-s,--seed", c.seed, "Random seed (initialisation, batches, noise)")->capture_default_str();
  // Run control.
  sub->add_option("--checkpoint-every", o.checkpoint_every, "Write a checkpoint every N steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--log-every", o.log_every, "Append to train.jsonl every N steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--time-limit", o.time_limit_min,
                  "Stop cleanly (checkpoint written, resumable) after this many minutes (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("-q,--quiet", o.quiet, "No progress bar");
  o.dist_flags.add(sub);
  sub->footer(
      "Ctrl-C or SIGTERM writes a checkpoint and stops (exit status 130); run again with --resume.\n"
      "With several processes only rank 0 writes the run folder; resume needs the same world size.\n"
      "Global options -t/--threads and --device are described in `arcflow --help`.");
}

void write_outputs(TeacherTrainer& tr, const std::string& ckpt_path, const std::string& teacher_path, bool lead) {
  Checkpoint c = tr.checkpoint();  // collective: every rank takes part, rank 0 writes
  if (!lead) return;
  c.metadata["command"] = command_line();
  save_checkpoint(ckpt_path, c);
  save_network(*tr.ema(), teacher_path);
}

// Each architecture's flags as its training config (the registry's train-teacher hooks take it):
// the flags are the command's, so this table is the one place that knows which belong to which.
struct ArchFlags {
  const char* arch;
  nlohmann::json (*config)(TeacherOptions& o);
};

nlohmann::json dit_flags(TeacherOptions& o) {
  if (!o.flux_config.empty()) throw std::invalid_argument("--flux-config is for --arch flux");
  return o.dit;
}

// The transformer config from --flux-config, the Fashion-MNIST class names.
nlohmann::json flux_flags(TeacherOptions& o) {
  if (o.flux_config.empty())
    throw std::invalid_argument("--arch flux needs --flux-config FILE (e.g. configs/flux/fashion-teacher.json)");
  require_input_file("--flux-config", o.flux_config, "a FLUX transformer config.json");
  o.flux.transformer = read_flux_config(o.flux_config);
  o.flux.class_names = io::fashion_mnist_class_names();
  o.flux.num_classes = static_cast<int64_t>(o.flux.class_names.size());
  return o.flux;
}

const ArchFlags kArchFlags[] = {{"dit", dit_flags}, {"flux", flux_flags}};

void resolve_model(TeacherOptions& o) {
  for (const ArchFlags& a : kArchFlags)
    if (o.cfg.arch == a.arch) {
      o.cfg.model = a.config(o);
      return;
    }
  throw std::invalid_argument("--arch: unknown architecture '" + o.cfg.arch + "'");
}

int run(TeacherOptions& o, const GlobalOptions& g) {
  const DistOptions dist = o.dist_flags.resolve();
  const bool lead = dist.rank == 0;
  if (!lead) o.quiet = true;
  const torch::Device device = start_up(g);
  resolve_model(o);
  o.cfg.validate();
  const RunFiles files = lead ? prepare_run(o.output, o.resume)
                              : RunFiles{o.output, o.output + "/checkpoint.safetensors", o.output + "/train.jsonl"};
  const std::string teacher_path = o.output + "/teacher.safetensors";

  io::FashionMnist data = io::load_fashion_mnist(o.data_dir, /*train=*/true);
  if (o.limit_train > 0 && o.limit_train < data.images.size(0)) {
    data.images = data.images.narrow(0, 0, o.limit_train);
    data.labels = data.labels.narrow(0, 0, o.limit_train);
  }
  const std::shared_ptr<Communicator> comm = connect(dist, device);
  TeacherTrainer tr(o.cfg, data.images, data.labels, device, comm);
  if (lead) {
    const int64_t params = count_parameters(tr.model()->module());
    std::printf("%s; %lld parameters; %lld images\n", tr.model()->summary().c_str(), static_cast<long long>(params),
                static_cast<long long>(data.images.size(0)));
    tr.ema()->save_companions(o.output);  // e.g. FLUX's class prompts, the stand-in for its text encoder
  }
  if (o.resume) {
    tr.restore(load_checkpoint(files.checkpoint), files.checkpoint);
    if (lead)
      std::printf("resumed from %s at step %lld\n", files.checkpoint.c_str(), static_cast<long long>(tr.steps_done()));
  }
  if (comm && lead)
    std::printf("data parallel: %d processes (%s), %lld images per step in all\n", dist.world_size,
                dist.backend.c_str(), static_cast<long long>(dist.world_size * o.cfg.batch_size));
  std::ofstream log;
  if (lead)
    log = open_run_log(files, o.resume,
                       {{"step", tr.steps_done()}, {"config", o.cfg.to_json()}, {"command", command_line()},
                        {"world_size", dist.world_size}});

  // Losses are averaged over the steps between log lines.
  const auto t0 = std::chrono::steady_clock::now();
  auto t_log = t0;
  int64_t images_since_log = 0, loss_n = 0;
  double loss_sum = 0.0;
  auto step = [&]() -> StepReport {
    const TeacherStepStats st = tr.step();
    images_since_log += o.cfg.batch_size * dist.world_size;  // all ranks
    if (!st.skipped) {
      loss_sum += st.loss;
      ++loss_n;
    } else {
      std::fprintf(stderr, "\nwarning: step %lld: non-finite loss or gradient, step skipped\n",
                   static_cast<long long>(st.step));
    }
    if (!lead || (st.step % o.log_every != 0 && st.step != o.cfg.iters)) return {st.step, ""};
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - t_log).count();
    const double loss = loss_n ? loss_sum / static_cast<double>(loss_n) : NAN;
    const double rate = dt > 0 ? static_cast<double>(images_since_log) / dt : 0.0;
    log << nlohmann::json{{"step", st.step},
                          {"loss", loss},
                          {"grad_norm", st.grad_norm},
                          {"lr", st.lr},
                          {"images_per_s", rate},
                          {"skipped_total", tr.skipped_steps()},
                          {"elapsed_s", std::chrono::duration<double>(now - t0).count()}}
               .dump()
        << "\n"
        << std::flush;
    t_log = now;
    images_since_log = loss_n = 0;
    loss_sum = 0.0;
    char text[96];
    std::snprintf(text, sizeof text, "loss %.4f  %.0f img/s", loss, rate);
    return {st.step, text};
  };
  LoopSettings ls;
  ls.label = "train-teacher";
  ls.total = o.cfg.iters;
  ls.checkpoint_every = o.checkpoint_every;
  ls.time_limit_min = o.time_limit_min;
  ls.quiet = o.quiet;
  ls.any_rank_stops = stop_agreement(comm);
  const int64_t start = tr.steps_done();
  const LoopResult r =
      run_training_loop(ls, start, step, [&] { write_outputs(tr, files.checkpoint, teacher_path, lead); });
  if (!lead) return r.exit_status();

  std::printf("%lld steps in %s (%.1f images/s); checkpoint %s; EMA teacher %s\n", static_cast<long long>(r.steps_run),
              format_duration(r.seconds).c_str(),
              r.seconds > 0 ? static_cast<double>(r.steps_run * o.cfg.batch_size * dist.world_size) / r.seconds : 0.0,
              files.checkpoint.c_str(), teacher_path.c_str());
  if (tr.skipped_steps() > 0)
    std::printf("%lld steps skipped for non-finite values\n", static_cast<long long>(tr.skipped_steps()));
  report_stop(ls, r, tr.steps_done());
  return r.exit_status();
}

}  // namespace

Runner add_train_teacher_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand("train-teacher",
                                 "Train a class-conditional teacher (DiT or FLUX) on Fashion-MNIST by flow matching");
  auto o = std::make_shared<TeacherOptions>();
  add_flags(sub, *o);
  return [o, &g] { return run(*o, g); };
}

}  // namespace arcflow::cli

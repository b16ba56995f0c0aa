// `arcflow distill`: data-free ArcFlow distillation (ARCFLOW.md section 4) of the image teacher into
// a few-step student (LoRA + mixture head), with checkpoints, resume, EMA, a JSONL log. Output:
//   DIR/checkpoint.safetensors   distiller state (trainable tensors, EMA, optimizer, RNG, iteration)
//   DIR/adapter.safetensors      the EMA student as an adapter (what `sample --adapter` loads)
//   DIR/train.jsonl              one JSON object per logged iteration
//   DIR/snapshots/adapter-NNNNNN.safetensors   with --snapshot-every N: the EMA adapter at every
//                                iteration NNNNNN that is a multiple of N (for training curves)
#include <chrono>
#include <cmath>
#include <optional>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "arcflow/distributed/process_group.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/training/distill.h"
#include "arcflow/util/progress.h"
#include "arcflow/models/flux/reference_adapter.h"
#include "commands.h"
#include "config_file.h"
#include "training_run.h"

namespace arcflow::cli {

namespace {

struct DistillOptions {
  DistillConfig d;
  StudentConfig s;
  std::string teacher = "models/teacher.safetensors";
  std::string output = "runs/arcflow-2";
  std::string policy = "arcflow";
  double guidance = 4.0;
  std::string prompts;  // FLUX model folders: pre-encoded prompts to distil from
  int64_t height = 1024, width = 1024;
  std::string dtype = "auto";
  bool checkpoint_blocks = false;
  int iters = 1000;
  bool resume = false;
  bool train_norm_out = true;                   // on when the teacher has a final norm ...
  const CLI::Option* train_norm_out_flag = nullptr;  // ... or as given (flag or config key)
  int checkpoint_every = 25;
  int snapshot_every = 0;
  int log_every = 1;
  double time_limit_min = 0;
  bool quiet = false;
  DistFlags dist_flags;  // data parallel
  DistOptions dist;      // resolved from dist_flags at the start of run()
};

void add_flags(CLI::App* sub, DistillOptions& o) {
  DistillConfig& d = o.d;
  add_config_option(sub);
  sub->add_option("--teacher", o.teacher, "Teacher weights (from train-teacher; any registered architecture)")
      ->capture_default_str();
  sub->add_option("-o,--output", o.output, "Run folder: checkpoint.safetensors, adapter.safetensors, train.jsonl")
      ->capture_default_str();
  sub->add_flag("--resume", o.resume, "Continue from OUTPUT/checkpoint.safetensors (same settings)");
  // The policy names come from the head table (models/policy_head.h), plus "linear" (arcflow, K = 1).
  std::vector<std::string> policies{"linear"};
  std::string policy_help = "Student policy: linear (the K = 1, g = 0 momentum mixture: one straight step)";
  for (const auto& e : policy_heads()) {
    policies.push_back(e.name);
    policy_help += "; " + std::string(e.name) + " (" + e.description + ")";
  }
  sub->add_option("--policy", o.policy, policy_help)
      ->check(CLI::IsMember(policies))
      ->capture_default_str();
  sub->add_option("-K,--components", o.s.K, "Mixture components (arcflow and gmflow policies)")->capture_default_str();
  sub->add_option("--nfe", d.nfe, "Student steps (network evaluations per sample)")->capture_default_str();
  sub->add_option("--shift", d.shift, "Schedule shift s >= 1 of the student's steps")->capture_default_str();
  sub->add_option("--timestep-ratio", d.timestep_ratio, "Length of the last step relative to the others")
      ->capture_default_str();
  sub->add_option("--guidance", o.guidance,
                  "Teacher guidance: classifier-free guidance scale, or for a FLUX teacher with a guidance "
                  "embedding the distilled guidance it is given (the reference uses 3.5)")
      ->capture_default_str();
  sub->add_option("--prompts", o.prompts,
                  "FLUX model folder teachers: prompt-embeddings file the conditions are drawn from (uniformly)");
  sub->add_option("--height", o.height, "FLUX model folder teachers: image height in pixels")->capture_default_str();
  sub->add_option("--width", o.width, "FLUX model folder teachers: image width in pixels")->capture_default_str();
  sub->add_flag("--checkpoint-blocks", o.checkpoint_blocks,
                "FLUX teachers: recompute each transformer block's activations in backward instead of keeping "
                "them (less memory, about one more forward per iteration)");
  sub->add_option("--dtype", o.dtype,
                  "FLUX model folder teachers: dtype of the frozen weights: auto (bfloat16 on CUDA, else float32), "
                  "float32, bfloat16, float16 (LoRA, heads and optimizer state stay float32)")
      ->capture_default_str();
  sub->add_option("--iters", o.iters, "Total iterations (a resumed run continues up to this)")->capture_default_str();
  sub->add_option("--batch", d.batch_size, "Batch size (class labels and noises per iteration, per process when data-parallel)")->capture_default_str();
  sub->add_option("--num-intermediate-states", d.num_intermediate_states, "States M visited per student step")
      ->capture_default_str();
  sub->add_option("--total-substeps", d.total_substeps, "Substeps of the whole [0, 1] raw time")->capture_default_str();
  sub->add_option("--window-substeps", d.window_substeps, "Window W at each step's end, in substeps")
      ->capture_default_str();
  sub->add_option("--component-dropout", d.component_dropout, "Probability of dropping a component in the walk")
      ->capture_default_str();
  sub->add_option("--decay-iters", d.num_decay_iters, "Iterations over which teacher_ratio falls from 1 to 0")
      ->capture_default_str();
  sub->add_option("--loss-scale", d.loss_scale, "Loss scale")->capture_default_str();
  sub->add_option("--lr", d.lr, "AdamW learning rate (the log-gamma head uses lr x --log-gamma-lr-mult)")
      ->capture_default_str();
  sub->add_option("--log-gamma-lr-mult", d.log_gamma_lr_mult, "Learning-rate factor of the log-gamma head")
      ->capture_default_str();
  sub->add_option("--beta1", d.beta1, "AdamW beta1")->capture_default_str();
  sub->add_option("--beta2", d.beta2, "AdamW beta2")->capture_default_str();
  sub->add_option("--weight-decay", d.weight_decay, "AdamW weight decay")->capture_default_str();
  sub->add_option("--warmup-iters", d.warmup_iters, "Linear learning-rate warm-up iterations")->capture_default_str();
  sub->add_option("--grad-clip", d.grad_clip, "Gradient-norm clip")->capture_default_str();
  sub->add_option("--grad-clip-start", d.grad_clip_start,
                  "Iteration from which gradients are clipped (before it the norm is only measured; a resumed run "
                  "keeps its checkpoint's)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--ema-gamma", d.ema_gamma, "EMA beta_t = (1 - 1/t)^(gamma + 1)")->capture_default_str();
  sub->add_option("--ema-start", d.ema_start,
                  "Iteration from which the EMA averages, its clock t = iteration + 1 - ema-start (before it the EMA "
                  "copies the weights)")
      ->capture_default_str();
  sub->add_option("--lora-rank", o.s.lora.rank, "LoRA rank")->capture_default_str();
  sub->add_option("--lora-alpha", o.s.lora.alpha, "LoRA alpha (scale alpha / rank)")->capture_default_str();
  sub->add_option("--lora-dropout", o.s.lora.dropout, "LoRA input dropout")->capture_default_str();
  sub->add_option("--lora-targets", o.s.lora.targets, "Glob patterns of the Linear layers that get LoRA (default: the architecture's; the DiT's are blocks.*.mlp.fc1, blocks.*.mlp.fc2, t_embedder.linear_1, t_embedder.linear_2)")
      ->capture_default_str();
  o.train_norm_out_flag = sub->add_flag("--train-norm-out,!--no-train-norm-out", o.train_norm_out,
                "Also train the final norm's modulation (norm_out), as the reference does (default: on when the "
                "teacher has one; a resumed run keeps its checkpoint's)");
  sub->add_option("--logstd-hidden", o.s.logstd_hidden,
                  "GMFlow: width of the logstd MLP's hidden layer (pi-Flow: 1024; 0: the embedding width)")
      ->check(CLI::Range(int64_t{0}, int64_t{65536}))
      ->capture_default_str();
  sub->add_option("-s,--seed", d.seed, "Random seed (head noise, labels, noise, walk)")->capture_default_str();
  sub->add_option("--checkpoint-every", o.checkpoint_every, "Write a checkpoint every N iterations")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--snapshot-every", o.snapshot_every,
                  "Every N iterations also keep the EMA adapter as OUTPUT/snapshots/adapter-<iteration, 6 digits>"
                  ".safetensors (what `arcflow eval --curve NAME=OUTPUT` plots); 0: off")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_option("--log-every", o.log_every, "Append to train.jsonl every N iterations")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--time-limit", o.time_limit_min, "Stop cleanly (checkpoint written) after this many minutes")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("-q,--quiet", o.quiet, "No progress bar");
  sub->add_option("--micro-batches", d.micro_batches,
                  "Split each batch into this many micro-batches (gradient accumulation; must divide --batch)")
      ->capture_default_str();
  o.dist_flags.add(sub);
  sub->footer(
      "Ctrl-C or SIGTERM writes a checkpoint and stops (exit status 130); run again with --resume.\n"
      "With several processes only rank 0 writes the run folder; resume needs the same world size and\n"
      "micro-batches, and every rank must be able to read OUTPUT/checkpoint.safetensors.\n"
      "Global options -t/--threads and --device are described in `arcflow --help`.");
}

void validate(DistillOptions& o) {
  if (o.policy == "linear") {
    if (o.s.K != 1 && o.s.K != StudentConfig{}.K)
      throw std::invalid_argument("--policy linear means K = 1; drop -K " + std::to_string(o.s.K));
    o.s.K = 1;
  }
  o.s.policy = o.policy == "linear" ? "arcflow" : o.policy;  // linear is the K = 1 momentum mixture
  if (!is_model_folder(o.teacher))
    require_input_file("--teacher", o.teacher, "from `arcflow train-teacher`; the shipped one is models/teacher.safetensors");
  try {
    o.s.validate();
  } catch (const std::invalid_argument& e) {  // name the flags: -K, --lora-*
    throw std::invalid_argument(std::string(e.what()) + " (flags -K, --lora-rank, --lora-alpha, --lora-dropout)");
  }
  const DistillConfig& d = o.d;
  if (d.nfe < 1) throw std::invalid_argument("--nfe must be >= 1, got " + std::to_string(d.nfe));
  if (!(d.shift >= 1)) throw std::invalid_argument("--shift must be >= 1");
  if (!(d.timestep_ratio > 0)) throw std::invalid_argument("--timestep-ratio must be > 0");
  if (d.batch_size < 1) throw std::invalid_argument("--batch must be >= 1");
  if (d.micro_batches < 1 || d.batch_size % d.micro_batches != 0)
    throw std::invalid_argument("--micro-batches " + std::to_string(d.micro_batches) + " must be >= 1 and divide --batch " +
                                std::to_string(d.batch_size));
  if (o.iters < 1) throw std::invalid_argument("--iters must be >= 1, got " + std::to_string(o.iters));
  if (d.num_intermediate_states < 1) throw std::invalid_argument("--num-intermediate-states must be >= 1");
  if (d.component_dropout < 0 || d.component_dropout >= 1)
    throw std::invalid_argument("--component-dropout must be in [0, 1)");
  if (!(d.lr > 0)) throw std::invalid_argument("--lr must be > 0");
}

// The teacher of --teacher: a weights file, or a model folder set up for distillation (latent
// size, prompt pool with its distilled guidance, dtype; registry.h, load_teacher).
NetworkPtr load_teacher(const DistillOptions& o, torch::Device device) {
  if (!is_model_folder(o.teacher)) {
    if (!o.prompts.empty()) throw std::invalid_argument("--prompts is for model folders; --teacher " + o.teacher +
                                                        " is a weights file");
    return load_network(o.teacher, device);
  }
  if (o.prompts.empty())
    throw std::invalid_argument("--teacher " + o.teacher + " is a model folder: pass --prompts FILE (pre-encoded "
                                "prompts; scripts/encode_prompts.py writes one)");
  require_input_file("--prompts", o.prompts, "a prompt-embeddings file");
  FolderTeacherOptions fo;
  fo.prompts = o.prompts;
  fo.height = o.height;
  fo.width = o.width;
  fo.guidance = o.guidance;
  fo.batch = o.d.batch_size / std::max(1, o.d.micro_batches);
  fo.dtype = parse_compute_dtype(o.dtype, device);
  fo.memory_note = "training needs more";
  return arcflow::load_teacher(o.teacher, fo, device);
}

io::Metadata run_metadata(const DistillOptions& o, int iteration) {
  io::Metadata m = {{"command", command_line()},
          {"teacher", o.teacher},
          {"policy", o.policy},
          {"guidance", std::to_string(o.guidance)},
          {"iteration", std::to_string(iteration)}};
  write_schedule(o.d, m);
  if (!o.prompts.empty()) {  // a FLUX teacher: what its student samples at
    m["prompts"] = o.prompts;
    m["height"] = std::to_string(o.height);
    m["width"] = std::to_string(o.width);
  }
  return m;
}

// The adapter holds the EMA weights: swap them in, save (atomically), swap the live ones back.
// Local to this process (no collective).
void save_ema_adapter(Distiller& dist, LoRAStudent& student, const DistillOptions& o, const std::string& path) {
  torch::NoGradGuard g;
  auto params = student->main_parameters();
  for (auto& p : student->log_gamma_parameters()) params.push_back(p);
  std::vector<torch::Tensor> live;
  for (const auto& p : params) live.push_back(p.detach().clone());
  dist.load_ema_into_params();
  save_adapter(student, path, run_metadata(o, dist.iteration()));
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(live[i]);
}

void write_outputs(Distiller& dist, LoRAStudent& student, const DistillOptions& o, const std::string& ckpt_path,
                   const std::string& adapter_path) {
  Checkpoint c = dist.checkpoint();  // collective: every rank takes part, rank 0 writes
  if (o.dist.rank != 0) return;
  for (const auto& [key, value] : run_metadata(o, dist.iteration())) c.metadata[key] = value;
  c.metadata["kind"] = "distill";
  c.metadata["student_config"] = o.s.to_json().dump();
  save_checkpoint(ckpt_path, c);
  save_ema_adapter(dist, student, o, adapter_path);
}

// OUTPUT/snapshots/adapter-000400.safetensors for iteration 400.
std::string snapshot_path(const std::string& output, int64_t iteration) {
  char name[64];
  std::snprintf(name, sizeof name, "/snapshots/adapter-%06lld.safetensors", static_cast<long long>(iteration));
  return output + name;
}

int run(DistillOptions& o, const GlobalOptions& g) {
  o.dist = o.dist_flags.resolve();
  const bool lead = o.dist.rank == 0;
  if (!lead) o.quiet = true;
  const torch::Device device = start_up(g);
  validate(o);
  const RunFiles files = lead ? prepare_run(o.output, o.resume)
                              : RunFiles{o.output, o.output + "/checkpoint.safetensors", o.output + "/train.jsonl"};
  if (!lead && o.resume && !file_exists(files.checkpoint))
    throw std::runtime_error("rank " + std::to_string(o.dist.rank) + ": " + files.checkpoint +
                             ": no checkpoint to resume from (every rank reads it: share the run folder)");
  const std::string adapter_path = o.output + "/adapter.safetensors";
  if (lead && o.snapshot_every > 0) io::make_output_dir(o.output + "/snapshots");

  // A resumed run continues under the rules it began with: its checkpoint's recipe (clip start,
  // EMA clock) and the student fields older files lack read as those files meant.
  std::optional<Checkpoint> resumed;
  std::optional<StudentConfig> resumed_student;
  if (o.resume) {
    resumed = load_checkpoint(files.checkpoint);
    const auto sc = resumed->metadata.find("student_config");
    if (sc == resumed->metadata.end())
      throw std::runtime_error(files.checkpoint + ": no student config in the metadata: not a distillation checkpoint");
    try {  // a malformed recipe number or student config is named with the file
      Distiller::recipe_of_checkpoint(*resumed, o.d);
      resumed_student = StudentConfig::from_json(nlohmann::json::parse(sc->second));
    } catch (const std::exception& e) {
      throw std::runtime_error(files.checkpoint + ": " + e.what());
    }
  }
  NetworkPtr teacher = load_teacher(o, device);
  const bool norm_given = o.train_norm_out_flag != nullptr && o.train_norm_out_flag->count() > 0;
  if (resumed_student) {
    o.s.head_bias_noise_per_token = resumed_student->head_bias_noise_per_token;
    if (o.s.policy == "gmflow") o.s.logstd_hidden = resumed_student->logstd_hidden;
    o.s.train_norm_out = norm_given ? o.train_norm_out : resumed_student->train_norm_out;
  } else {
    o.s.train_norm_out = o.train_norm_out && (norm_given || !teacher->final_norm_module().empty());
  }
  // --guidance is classifier-free guidance for a teacher with a null condition; for distilled
  // guidance (FLUX.1-dev's prompts) it is the value the network reads, so no CFG; a teacher
  // without either (FLUX.1-schnell) is called once per step.
  const double cfg_scale = teacher->guidance_kind() == GuidanceKind::classifier_free ? o.guidance : 1.0;
  torch::manual_seed(o.d.seed);  // the same initial weights on every rank
  LoRAStudent student(teacher, o.s);
  o.s = student->config;  // with the teacher's default LoRA targets filled in
  if (o.checkpoint_blocks && !student->base->set_block_checkpointing(true))
    throw std::invalid_argument("--checkpoint-blocks: the " + teacher->kind() + " architecture has no per-block "
                                "checkpointing (FLUX has)");
  {  // before the first step: the guided teacher's call on 2 x the micro-batch, or the student's with backward
    const int64_t micro = o.d.batch_size / std::max(1, o.d.micro_batches);
    const double need = teacher->forward_memory_bytes(0) + std::max(student->base->forward_memory_bytes(micro, true),
                                                                     teacher->forward_memory_bytes(2 * micro));
    check_memory("--batch and --micro-batches", need, device,
                 "teacher and student weights and the activations of " + std::to_string(micro) +
                     " samples kept for the backward pass");
  }
  // LoRA dropout draws from torch's global generator: a rank of its own from here on.
  if (!lead) torch::manual_seed(stream_seed(o.d.seed, 1000000 + o.dist.rank));
  const std::shared_ptr<Communicator> comm = connect(o.dist, device);
  const int64_t trainable = student->trainable_count(), total = student->total_count();
  if (lead)
    std::printf("student: K %lld, LoRA rank %d on %zu patterns; trainable %lld of %lld parameters (%.2f%%)\n",
              static_cast<long long>(o.s.K), o.s.lora.rank, o.s.lora.targets.size(),
              static_cast<long long>(trainable), static_cast<long long>(total),
              100.0 * static_cast<double>(trainable) / static_cast<double>(total));
  if (comm) {
    int64_t bytes = 8 * o.d.nfe;  // the step losses ride along
    for (const auto& p : student->parameters())
      if (p.requires_grad()) bytes += p.numel() * static_cast<int64_t>(p.element_size());
    if (lead)
      std::printf("data parallel: %d processes (%s, rendezvous %s:%d), %d samples per iteration in all; "
                  "all-reduce of %.2f MB of gradients per iteration\n",
                  o.dist.world_size, o.dist.backend.c_str(), o.dist.master_addr.c_str(), o.dist.master_port,
                  o.dist.world_size * o.d.batch_size, static_cast<double>(bytes) / 1e6);
  }
  Distiller dist(make_distill_problem(student, teacher, cfg_scale, o.d, device), o.d, comm);
  if (resumed) {
    if (resumed_student->to_json() != o.s.to_json())
      throw std::runtime_error(files.checkpoint + ": made with another student config (" +
                               resumed_student->to_json().dump() + "; these settings give " + o.s.to_json().dump() +
                               "); resume with the same settings");
    dist.restore(*resumed, files.checkpoint);
    if (lead) std::printf("resumed from %s at iteration %d\n", files.checkpoint.c_str(), dist.iteration());
  }
  std::ofstream log;
  if (lead)
    log = open_run_log(files, o.resume,
                       {{"iteration", dist.iteration()}, {"command", command_line()}, {"student", o.s.to_json()},
                        {"world_size", o.dist.world_size}, {"micro_batches", o.d.micro_batches}});

  const auto t0 = std::chrono::steady_clock::now();
  auto t_log = t0;
  auto step = [&]() -> StepReport {
    const DistillStats st = dist.step();
    const auto now = std::chrono::steady_clock::now();
    if (st.skipped)
      std::fprintf(stderr, "\nwarning: iteration %d: non-finite loss or gradient, update skipped\n", st.iteration);
    if (lead && (st.iteration % o.log_every == 0 || st.iteration == o.iters)) {
      const double dt = std::chrono::duration<double>(now - t_log).count() / o.log_every;
      log << nlohmann::json{{"iteration", st.iteration}, {"loss", st.loss},       {"step_losses", st.step_losses},
                            {"teacher_ratio", st.teacher_ratio}, {"lr", st.lr}, {"grad_norm", st.grad_norm},
                            {"skipped", st.skipped}, {"s_per_iter", dt},
                            {"elapsed_s", std::chrono::duration<double>(now - t0).count()}}
                 .dump()
          << "\n"
          << std::flush;
      t_log = now;
    }
    std::ostringstream text;
    text.precision(4);
    text << "loss";
    for (double l : st.step_losses) text << " " << l;
    text << "  tr " << st.teacher_ratio;
    return {st.iteration, text.str()};
  };
  LoopSettings ls;
  ls.label = "distill " + o.policy;
  ls.unit = "iteration";
  ls.total = o.iters;
  ls.checkpoint_every = o.checkpoint_every;
  ls.snapshot_every = o.snapshot_every;
  ls.time_limit_min = o.time_limit_min;
  ls.quiet = o.quiet;
  ls.any_rank_stops = stop_agreement(comm);
  const LoopResult r = run_training_loop(
      ls, dist.iteration(), step, [&] { write_outputs(dist, student, o, files.checkpoint, adapter_path); },
      [&](int64_t it) {
        if (lead) save_ema_adapter(dist, student, o, snapshot_path(o.output, it));
      });
  if (!lead) return r.exit_status();
  const auto save_reference = find_model(teacher->kind()).save_reference_adapter;
  if (save_reference != nullptr && is_model_folder(o.teacher) && o.s.policy == "arcflow" && o.s.K >= 2) {
    // A published model's ArcFlow student also in the reference's adapter folder (pnotp/ArcFlow's loader reads it).
    LoRAStudent ema = load_adapter(teacher, adapter_path);
    save_reference(ema, o.output + "/reference-adapter");
    std::printf("reference-layout adapter (pnotp/ArcFlow, diffusers): %s/reference-adapter\n", o.output.c_str());
  }
  std::printf("%lld iterations in %s; checkpoint %s; adapter (EMA) %s\n", static_cast<long long>(r.steps_run),
              format_duration(r.seconds).c_str(), files.checkpoint.c_str(), adapter_path.c_str());
  report_stop(ls, r, dist.iteration());
  return r.exit_status();
}

}  // namespace

Runner add_distill_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand("distill", "Distil the teacher into a few-step ArcFlow (or linear, or GMFlow) student");
  auto o = std::make_shared<DistillOptions>();
  add_flags(sub, *o);
  return [o, &g] { return run(*o, g); };
}

}  // namespace arcflow::cli

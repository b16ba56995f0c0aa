// Data-parallel distillation over real Gloo process groups on loopback (two ranks as two threads of
// this test process): against a single process that sees the same samples with gradient
// accumulation, through a collective checkpoint and resume, and when a peer goes away.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "arcflow/distributed/process_group.h"
#include "arcflow/models/weights.h"
#include "arcflow/core/momentum.h"
#include "arcflow/training/distill.h"
#include "arcflow/training/teacher.h"
#include "tiny_models.h"

using namespace arcflow;

namespace {

// A free port on loopback (bound, read back, released).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A student whose K-component policy is affine in x (so every sample's noise matters), its
// parameters drawn from a fixed local generator: every rank starts from the same weights.
struct AffineStudent {
  static constexpr int64_t K = 3, D = 2;
  torch::Tensor w_mu, b_mu, w_lw, w_lg;
  AffineStudent() {
    at::Generator gen = at::detail::createCPUGenerator(11);
    w_mu = (0.3 * torch::randn({D, K * D}, gen)).requires_grad_(true);
    b_mu = (0.3 * torch::randn({K * D}, gen)).requires_grad_(true);
    w_lw = (0.3 * torch::randn({D, K}, gen)).requires_grad_(true);
    w_lg = (0.3 * torch::randn({D, K - 1}, gen)).requires_grad_(true);
  }
  PolicyPtr operator()(const torch::Tensor& x, const torch::Tensor& sigma) const {
    const int64_t B = x.size(0);
    return std::make_shared<MomentumPolicy>(make_mixture((x.matmul(w_mu) + b_mu).reshape({B, K, D}), x.matmul(w_lw).reshape({B, K, 1}),
                       x.matmul(w_lg).reshape({B, K - 1, 1}), sigma));
  }
  std::vector<torch::Tensor> params() const { return {w_mu, b_mu, w_lw}; }
};

DistillProblem problem(const std::shared_ptr<AffineStudent>& s) {
  DistillProblem p;
  p.student = [s](const torch::Tensor& x, const torch::Tensor& sigma, const Condition&) { return (*s)(x, sigma); };
  // A bending teacher field.
  p.teacher = [](const torch::Tensor& x, const torch::Tensor& sigma, const Condition&) {
    return torch::sin(2 * x) - x * (1 + sigma.reshape({-1, 1}));
  };
  p.sample_conditions = [](int64_t b, at::Generator& gen) { return Condition::labels(torch::randint(10, {b}, gen)); };
  p.sample_shape = {AffineStudent::D};
  p.params = s->params();
  p.log_gamma_params = {s->w_lg};
  return p;
}

DistillConfig config(int batch, int micro) {
  DistillConfig c;
  c.nfe = 2;
  c.batch_size = batch;
  c.micro_batches = micro;
  c.lr = 0.02;
  c.warmup_iters = 2;
  c.num_decay_iters = 4;
  c.ema_start = 1;
  c.component_dropout = 0.2;
  c.seed = 7;
  return c;
}

std::vector<torch::Tensor> weights(const AffineStudent& s) {
  return {s.w_mu.detach().clone(), s.b_mu.detach().clone(), s.w_lw.detach().clone(), s.w_lg.detach().clone()};
}

double max_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, (a[i] - b[i]).abs().max().item<double>());
  return m;
}

// Runs `body(rank, comm)` on two threads joined in one Gloo group; rethrows a thread's failure.
void two_ranks(const std::function<void(int, std::shared_ptr<Communicator>)>& body, double timeout_s = 60) {
  const int port = free_port();
  std::exception_ptr err[2];
  auto run = [&](int rank) {
    try {
      DistOptions o;
      o.rank = rank;
      o.world_size = 2;
      o.master_port = port;
      o.timeout_s = timeout_s;
      body(rank, connect(o));
    } catch (...) {
      err[rank] = std::current_exception();
    }
  };
  std::thread a(run, 0), b(run, 1);
  a.join();
  b.join();
  for (auto& e : err)
    if (e) std::rethrow_exception(e);
}

}  // namespace

TEST(DataParallel, StreamSeedsAreDistinctAndStreamZeroIsTheSeed) {
  EXPECT_EQ(stream_seed(42, 0), 42u);
  EXPECT_NE(stream_seed(42, 1), stream_seed(42, 2));
  EXPECT_NE(stream_seed(42, 1), stream_seed(43, 1));
}

TEST(DataParallel, TwoRanksMatchOneProcessWithTheSameSamples) {
  if (!gloo_available()) GTEST_SKIP() << "built without Gloo";
  constexpr int kIters = 3;
  // Reference: one process, batch 8 as 2 micro-batches of 4 (random streams 0 and 1).
  auto ref_student = std::make_shared<AffineStudent>();
  Distiller ref(problem(ref_student), config(8, 2));
  std::vector<DistillStats> ref_stats;
  for (int i = 0; i < kIters; ++i) ref_stats.push_back(ref.step());
  const auto ref_w = weights(*ref_student);

  // Two ranks, batch 4 each (rank r draws from stream r); after 2 iterations a collective
  // checkpoint, fresh distillers restore it and do the last iteration.
  std::vector<torch::Tensor> w[2];
  std::vector<DistillStats> stats[2];
  Checkpoint ckpt0;
  two_ranks([&](int rank, std::shared_ptr<Communicator> comm) {
    auto s = std::make_shared<AffineStudent>();
    {
      Distiller d(problem(s), config(4, 1), comm);
      for (int i = 0; i < kIters - 1; ++i) stats[rank].push_back(d.step());
      Checkpoint c = d.checkpoint();  // collective
      if (rank == 0) ckpt0 = c;
      comm->barrier();
      // Rank 0 alone writes the checkpoint in training; here each rank restores rank 0's.
    }
    comm->barrier();
    auto s2 = std::make_shared<AffineStudent>();
    Distiller d2(problem(s2), config(4, 1), comm);
    d2.restore(ckpt0, "rank-0 checkpoint");
    stats[rank].push_back(d2.step());
    w[rank] = weights(*s2);
  });
  EXPECT_EQ(max_diff(w[0], w[1]), 0.0) << "ranks diverged";
  EXPECT_LT(max_diff(w[0], ref_w), 1e-5);
  EXPECT_GT(max_diff(w[0], weights(AffineStudent())), 1e-3) << "training changed nothing";
  for (int i = 0; i < kIters; ++i)
    for (size_t k = 0; k < ref_stats[i].step_losses.size(); ++k)
      EXPECT_NEAR(stats[0][i].step_losses[k], ref_stats[i].step_losses[k], 1e-5 * (1 + ref_stats[i].step_losses[k]));
  // The checkpoint records the world size; a single process cannot resume it.
  EXPECT_EQ(ckpt0.metadata.at("world_size"), "2");
  EXPECT_TRUE(ckpt0.extra.count("rng.1") == 1 && ckpt0.extra.count("global_rng.1") == 1);
  auto s3 = std::make_shared<AffineStudent>();
  Distiller single(problem(s3), config(4, 1));
  try {
    single.restore(ckpt0, "ckpt");
    ADD_FAILURE() << "resumed with another world size";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("same world size"), std::string::npos) << e.what();
  }
}

TEST(DataParallel, APeerThatStopsMakesTheOtherFailWithinTheTimeout) {
  if (!gloo_available()) GTEST_SKIP() << "built without Gloo";
  std::string message;
  double seconds = 0;
  two_ranks(
      [&](int rank, std::shared_ptr<Communicator> comm) {
        if (rank == 1) return;  // leaves: its process group is destroyed, its sockets close
        auto s = std::make_shared<AffineStudent>();
        Distiller d(problem(s), config(4, 1), comm);
        const auto t0 = std::chrono::steady_clock::now();
        try {
          d.step();
        } catch (const std::runtime_error& e) {
          message = e.what();
        }
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      },
      /*timeout_s=*/5);
  EXPECT_NE(message.find("peer process has probably stopped"), std::string::npos) << message;
  EXPECT_LT(seconds, 30);
}

TEST(DataParallel, BadOptionsAreRefusedByName) {
  DistOptions o;
  o.world_size = 2;
  o.rank = 2;
  EXPECT_THROW(o.validate(), std::invalid_argument);
  o.rank = 0;
  o.backend = "mpi";
  EXPECT_THROW(o.validate(), std::invalid_argument);
  o.backend = "nccl";
  if (nccl_available())
    EXPECT_THROW(connect(o, torch::kCPU), std::invalid_argument);  // NCCL reduces GPU tensors only
  else
    EXPECT_THROW(connect(o), std::runtime_error);  // a build without NCCL says so
  EXPECT_EQ(connect(DistOptions{}), nullptr);    // world size 1: no group
  ::setenv("WORLD_SIZE", "two", 1);
  EXPECT_THROW(DistOptions::from_env(), std::invalid_argument);
  ::unsetenv("WORLD_SIZE");
}

TEST(DataParallel, TeacherRanksStayIdenticalAndUseEachOthersBatches) {
  if (!gloo_available()) GTEST_SKIP() << "built without Gloo";
  TeacherTrainConfig c;
  c.model = test::tiny_dit();
  c.batch_size = 4;
  c.warmup_iters = 1;
  c.seed = 5;
  torch::manual_seed(11);
  const torch::Tensor images = torch::rand({12, 1, 8, 8}) * 2 - 1, labels = torch::arange(12, torch::kLong) % 3;
  std::mutex init;  // the trainer seeds torch's global generator to initialise: one rank at a time here
  io::TensorMap w[2];
  Checkpoint ckpt;
  two_ranks([&](int rank, std::shared_ptr<Communicator> comm) {
    std::unique_ptr<TeacherTrainer> tr;
    {
      std::lock_guard<std::mutex> lock(init);
      tr = std::make_unique<TeacherTrainer>(c, images, labels, torch::kCPU, comm);
    }
    for (int i = 0; i < 3; ++i) tr->step();
    Checkpoint k = tr->checkpoint();  // collective
    w[rank] = state_dict(tr->model()->module());
    if (rank == 0) ckpt = k;
  });
  TeacherTrainer alone(c, images, labels, torch::kCPU);
  for (int i = 0; i < 3; ++i) alone.step();
  const io::TensorMap single = state_dict(alone.model()->module());
  double same = 0, apart = 0;
  for (const auto& [k, v] : w[0]) {
    same = std::max(same, (v - w[1].at(k)).abs().max().item<double>());
    apart = std::max(apart, (v - single.at(k)).abs().max().item<double>());
  }
  EXPECT_EQ(same, 0.0) << "ranks diverged";
  EXPECT_GT(apart, 1e-6) << "rank 1's batches changed nothing";
  EXPECT_EQ(ckpt.metadata.at("world_size"), "2");
  EXPECT_EQ(ckpt.extra.count("rng.1"), 1u);
  try {
    alone.restore(ckpt, "ckpt");
    ADD_FAILURE() << "a single process resumed a 2-process checkpoint";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("same world size"), std::string::npos) << e.what();
  }
}

// `arcflow serve`: keeps the teacher and the students loaded and generates on demand, for a web
// page (teacher 100 NFE next to ArcFlow-2 from the same noise, the toy's trajectory pictures) and a
// JSON API. The server itself is src/server/ (arcflow/server/server.h); this file turns flags into
// a ServerConfig, checks the files before anything is loaded or bound, and stops on Ctrl-C.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "arcflow/sampling/student_sampling.h"
#include "arcflow/server/server.h"
#include "commands.h"
#include "eval_table.h"

namespace arcflow::cli {

namespace {

volatile sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

struct ServeOptions {
  server::ServerConfig config;
  std::vector<std::string> adapters;  // empty: the shipped students (kShipped) that are present
  std::string temperature = "auto";   // every student's
};

// Without --adapter: the three policies' shipped students, ArcFlow first (the page compares it
// with the teacher); arcflow-2 must exist, the baselines are skipped when absent.
const char* const kShipped[][2] = {{"arcflow-2", "models/arcflow-2.safetensors"},
                                   {"linear-2", "models/linear-2.safetensors"},
                                   {"gmflow-2", "models/gmflow-2.safetensors"}};

int run_serve(ServeOptions& o, const GlobalOptions& g) {
#ifndef ARCFLOW_HAVE_SERVER
  (void)o;
  (void)g;
  throw std::runtime_error("this arcflow was built without libmicrohttpd (Debian: libmicrohttpd-dev), so `serve` is "
                           "off; install it and rebuild");
#else
  server::ServerConfig& c = o.config;
  const std::string where = "; run from the repository root, or give the path";
  require_input_file("--teacher", c.teacher,
                     "the shipped one is models/teacher.safetensors; `arcflow train-teacher` makes one" + where);
  c.adapters.clear();
  const std::optional<double> temperature = parse_temperature(o.temperature, "--temperature");
  if (o.adapters.empty())
    for (const auto& [name, path] : kShipped)
      if (std::string(name) == "arcflow-2" || file_exists(path)) o.adapters.push_back(std::string(name) + "=" + path);
  for (const std::string& spec : o.adapters) {
    const AdapterSpec a = parse_adapter(spec);
    require_adapter("--adapter " + a.name, a.path,
                       "the shipped ones are models/arcflow-2.safetensors and models/linear-2.safetensors" + where);
    c.adapters.push_back({a.name, a.path, temperature});
  }
  c.device = g.device;
  c.log_requests = true;
  // Lower limits lower the page's defaults with them.
  c.limits.default_teacher_steps = std::min(c.limits.default_teacher_steps, c.limits.max_teacher_steps);
  c.limits.default_n = std::min(c.limits.default_n, c.limits.max_n);
  c.validate();
  start_up(g);  // thread count and device check

  std::printf("loading %s and %zu adapter(s)...\n", c.teacher.c_str(), c.adapters.size());
  const auto t0 = std::chrono::steady_clock::now();
  server::Server srv(c);
  const int port = srv.bind();
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string methods = "teacher";
  for (const auto& a : srv.catalog().adapters) methods += ", " + a.name + " (K " + std::to_string(a.K) + ")";
  std::printf("models loaded in %.1f s: %s\n", load_s, methods.c_str());
  const std::string host = c.host.find(':') != std::string::npos ? "[" + c.host + "]" : c.host;
  std::printf("serving on http://%s:%d/  (queue %zu, max n %d, at most %d connections, idle timeout %d s; Ctrl-C "
              "stops)\n",
              host.c_str(), port, c.queue, c.limits.max_n, c.max_connections, c.idle_timeout_s);
  std::fflush(stdout);

  // Ctrl-C / SIGTERM: the handler only records the signal; a watcher thread stops the server.
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done && g_stop_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g_stop_signal != 0) {
      std::printf("\nstopping (signal %d): finishing the running request, dropping waiting ones\n",
                  static_cast<int>(g_stop_signal));
      srv.stop();
    }
  });
  srv.serve();
  done = true;
  watcher.join();
  srv.stop();
  std::printf("stopped\n");
  return 0;
#endif
}

}  // namespace

Runner add_serve_command(CLI::App& app, GlobalOptions& g) {
  auto* sub = app.add_subcommand(
      "serve",
      "Serve a web page and a JSON API that generate images on demand: the teacher (guided Euler, 100 NFE by "
      "default) next to the distilled students from the same noise, with timings; models are loaded once");
  auto o = std::make_shared<ServeOptions>();
  server::ServerConfig& c = o->config;
  sub->add_option("--teacher", c.teacher, "Teacher weights (.safetensors; its \"model\" metadata picks the architecture)")->capture_default_str();
  sub->add_option("--adapter", o->adapters,
                  "Student as NAME=FILE (from `arcflow distill`); repeat for several. The page compares the first "
                  "with the teacher. Default: the shipped students of each policy that are present, "
                  "arcflow-2=models/arcflow-2.safetensors, linear-2=models/linear-2.safetensors, "
                  "gmflow-2=models/gmflow-2.safetensors");
  sub->add_option("--temperature", o->temperature,
                  "Students' sampling temperature on all but the last step: a number > 0, or auto (each policy's "
                  "published protocol at the requested steps: GMFlow pi-Flow's min(max(0.1 (steps - 1), 0), 1), "
                  "ArcFlow 1)")
      ->capture_default_str();
  sub->add_option("--host", c.host, "Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)")
      ->capture_default_str();
  sub->add_option("--port", c.port, "TCP port (0: any free port, printed at start-up)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  sub->add_option("--queue", c.queue,
                  "Requests that may wait for the generator (one runs at a time); when full, new ones get 503")
      ->check(CLI::Range(size_t{1}, size_t{1024}))
      ->capture_default_str();
  sub->add_option("--max-n", c.limits.max_n, "Most images per request")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  sub->add_option("--max-teacher-steps", c.limits.max_teacher_steps,
                  "Most teacher steps per request (2 NFE each)")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  sub->add_option("--max-steps", c.limits.max_student_steps, "Most student steps per request (1 NFE each)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->add_option("--toy-dir", c.toy_dir,
                  "Folder with the 2-D toy's pictures for the page's second tab (`arcflow demo` writes demo/toy, "
                  "`arcflow toy -o DIR` writes DIR); may be absent")
      ->capture_default_str();
  sub->add_option("--http-threads", c.http_threads,
                  "HTTP event-loop threads (libmicrohttpd; 0: 2). Connections do not take a thread each, so slow "
                  "clients cannot use them up")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  sub->add_option("--max-connections", c.max_connections,
                  "Open connections at most; a connection beyond it is closed as soon as it is accepted")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  sub->add_option("--idle-timeout", c.idle_timeout_s,
                  "Seconds without traffic after which a connection is closed: an idle keep-alive connection, or "
                  "one that sent part of a request and stopped (a request waiting for the generator is not idle)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  sub->footer(
      "Endpoints: GET / (the page), GET /healthz, GET /v1/models, POST /v1/generate (JSON: class, seed, n, method, "
      "steps, teacher_steps, stream; with \"stream\": true the answer is server-sent events: queued, started, one "
      "progress per sampler step, then result; see the README), DELETE /v1/jobs/ID (cancels a generation; a client "
      "that disconnects cancels its own), GET /v1/toy.\n"
      "Global options -t/--threads and --device are described in `arcflow --help`.");
  return [o, &g] { return run_serve(*o, g); };
}

}  // namespace arcflow::cli

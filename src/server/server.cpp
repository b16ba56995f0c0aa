#include "arcflow/server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "arcflow/server/job_queue.h"
#include "arcflow/server/page.h"
#include "arcflow/server/toy_pictures.h"

namespace arcflow::server {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

void ServerConfig::validate() const {
  if (port < 0 || port > 65535) throw std::invalid_argument("--port must be within 0..65535, got " + std::to_string(port));
  if (host.empty()) throw std::invalid_argument("--host is empty");
  if (queue < 1) throw std::invalid_argument("--queue must be >= 1, got " + std::to_string(queue));
  if (http_threads < 0) throw std::invalid_argument("--http-threads must be >= 0, got " + std::to_string(http_threads));
  limits.validate();
}

struct Server::Impl {
  ServerConfig config;
  ImageGenerator generator;
  JobQueue queue;
  httplib::Server http;
  int bound_port = -1;
  std::atomic<bool> serving{false}, stop_requested{false};
  std::thread background;
  std::mutex rng_mu;
  std::mt19937_64 rng{std::random_device{}()};

  explicit Impl(const ServerConfig& c)
      : config(c), generator(c.teacher, c.adapters, c.device), queue(c.queue) {}

  uint64_t random_seed() {
    std::lock_guard<std::mutex> lock(rng_mu);
    return rng() % (uint64_t{1} << 31);  // short enough to read and type again
  }

  static void send(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }

  static double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  }

  void generate(const httplib::Request& req, httplib::Response& res) {
    const auto t0 = Clock::now();
    GenerateRequest r;
    try {
      r = parse_generate_request(req.body, generator.catalog(), config.limits, random_seed());
    } catch (const RequestError& e) {
      send(res, 400, error_json(e.what(), e.field()));
      return;
    }
    struct Shared {
      GenerateResult result;
      double queue_ms = 0;
    };
    auto shared = std::make_shared<Shared>();
    auto job = queue.try_submit([this, r, shared, t0] {
      shared->queue_ms = ms_since(t0);
      shared->result = generator.run(r);
    });
    if (!job) {
      res.set_header("Retry-After", "1");
      send(res, 503,
           error_json("busy: " + std::to_string(queue.capacity()) +
                      " requests are already waiting for the generator (--queue); try again shortly"));
      return;
    }
    try {
      job->get();
    } catch (const std::future_error&) {
      send(res, 503, error_json("the server is stopping; the request was not run"));
      return;
    } catch (const std::exception& e) {
      send(res, 500, error_json(std::string("generation failed: ") + e.what()));
      return;
    }
    send(res, 200, result_json(r, generator.catalog(), shared->result, shared->queue_ms, ms_since(t0)));
  }

  void toy_file(const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    std::string bytes;
    if (!is_toy_file_name(name) || config.toy_dir.empty() ||
        !read_file_bytes(config.toy_dir + "/" + name, bytes)) {
      send(res, 404, error_json("no toy file '" + name + "' in '" + config.toy_dir + "'"));
      return;
    }
    res.set_content(bytes, name.size() > 4 && name.substr(name.size() - 4) == ".png" ? "image/png" : "application/json");
  }

  void routes() {
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(index_html(), "text/html; charset=utf-8");
    });
    http.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      send(res, 200, {{"status", "ok"}, {"queue_depth", queue.waiting()}, {"busy", queue.busy()},
                      {"queue_capacity", queue.capacity()}});
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      send(res, 200, catalog_json(generator.catalog(), config.limits, queue.capacity()));
    });
    http.Get("/v1/toy", [this](const httplib::Request&, httplib::Response& res) {
      send(res, 200, toy_json(config.toy_dir));
    });
    http.Get(R"(/toy/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) { toy_file(req, res); });
    http.Post("/v1/generate", [this](const httplib::Request& req, httplib::Response& res) { generate(req, res); });
    // Every other failure (unknown path, wrong method, body too large) answers JSON too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours already
      const std::string what = res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                               : res.status == 413 ? "request body too large"
                                                   : "HTTP error " + std::to_string(res.status);
      res.set_content(error_json(what).dump(), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what += std::string(": ") + e.what();
      } catch (...) {
      }
      send(res, 500, error_json(what));
    });
    if (config.log_requests)
      http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        std::printf("%s %s -> %d\n", req.method.c_str(), req.path.c_str(), res.status);
      });
    // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second server on the same
    // port binds too and the kernel splits the connections between them.
    http.set_socket_options([](int sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    http.set_payload_max_length(64 * 1024);
    const size_t threads =
        config.http_threads > 0 ? static_cast<size_t>(config.http_threads) : std::max<size_t>(8, config.queue + 4);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  }
};

Server::Server(const ServerConfig& config) {
  config.validate();
  impl_ = std::make_unique<Impl>(config);
  impl_->routes();
}

Server::~Server() { stop(); }

int Server::bind() {
  Impl& m = *impl_;
  if (m.bound_port >= 0) return m.bound_port;
  const ServerConfig& c = m.config;
  const int port = c.port == 0 ? m.http.bind_to_any_port(c.host) : (m.http.bind_to_port(c.host, c.port) ? c.port : -1);
  if (port < 0)
    throw std::runtime_error("cannot listen on " + c.host + ":" + std::to_string(c.port) +
                             " (port in use, or no such address on this machine); pick another with --port/--host");
  m.bound_port = port;
  return port;
}

void Server::serve() {
  Impl& m = *impl_;
  bind();
  m.serving = true;
  if (!m.stop_requested) m.http.listen_after_bind();
  m.serving = false;
}

void Server::start() {
  Impl& m = *impl_;
  bind();
  m.serving = true;  // so that a stop() right after start() waits for the thread
  m.background = std::thread([this] { serve(); });
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!m.http.is_running() && m.serving && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

void Server::stop() {
  if (!impl_) return;
  Impl& m = *impl_;
  m.stop_requested = true;
  m.queue.shutdown();
  while (m.serving) {
    if (m.http.is_running()) m.http.stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (m.background.joinable() && m.background.get_id() != std::this_thread::get_id()) m.background.join();
}

int Server::port() const { return impl_->bound_port; }

const ModelCatalog& Server::catalog() const { return impl_->generator.catalog(); }

}  // namespace arcflow::server

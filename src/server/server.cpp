#include "arcflow/server/server.h"

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <stdexcept>

#include "arcflow/server/generate_jobs.h"
#include "arcflow/server/http_server.h"
#include "arcflow/server/page.h"
#include "arcflow/server/toy_pictures.h"

namespace arcflow::server {

using nlohmann::json;

void ServerConfig::validate() const {
  if (port < 0 || port > 65535) throw std::invalid_argument("--port must be within 0..65535, got " + std::to_string(port));
  if (host.empty()) throw std::invalid_argument("--host is empty");
  if (queue < 1) throw std::invalid_argument("--queue must be >= 1, got " + std::to_string(queue));
  if (http_threads < 0) throw std::invalid_argument("--http-threads must be >= 0, got " + std::to_string(http_threads));
  if (max_connections < 1)
    throw std::invalid_argument("--max-connections must be >= 1, got " + std::to_string(max_connections));
  if (idle_timeout_s < 1) throw std::invalid_argument("--idle-timeout must be >= 1, got " + std::to_string(idle_timeout_s));
  limits.validate();
}

namespace {

http::Response json_response(int status, const json& body) {
  return {status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace), {}};
}

http::HttpOptions http_options(const ServerConfig& c) {
  http::HttpOptions o;
  o.host = c.host;
  o.port = c.port;
  o.max_connections = static_cast<unsigned>(c.max_connections);
  o.idle_timeout_s = static_cast<unsigned>(c.idle_timeout_s);
  o.threads = c.http_threads > 0 ? static_cast<unsigned>(c.http_threads) : 2u;
  o.max_body_bytes = 64 * 1024;
  return o;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

struct Server::Impl {
  ServerConfig config;
  ImageGenerator generator;
  GenerateJobs jobs;         // declared before `http`: destroyed after it
  http::HttpServer http;
  std::mutex mu;
  std::condition_variable stopped_cv;
  bool started = false, stopped = false;
  std::mutex stop_mu;

  explicit Impl(const ServerConfig& c)
      : config(c),
        generator(c.teacher, c.adapters, c.device),
        jobs(generator, c.limits, c.queue),
        http(http_options(c), [this](const http::Request& req, const std::shared_ptr<http::Exchange>& ex) { route(req, ex); },
             c.log_requests ? http::Logger([](const std::string& method, const std::string& path, int status) {
               std::printf("%s %s -> %d\n", method.c_str(), path.c_str(), status);
               std::fflush(stdout);
             })
                            : http::Logger()) {}

  void toy_file(const std::string& name, const std::shared_ptr<http::Exchange>& ex) {
    std::string bytes;
    if (!is_toy_file_name(name) || config.toy_dir.empty() || !read_file_bytes(config.toy_dir + "/" + name, bytes)) {
      ex->respond(json_response(404, error_json("no toy file '" + to_valid_utf8(name) + "' in '" + config.toy_dir + "'")));
      return;
    }
    const bool png = name.size() > 4 && name.substr(name.size() - 4) == ".png";
    ex->respond({200, png ? "image/png" : "application/json", std::move(bytes), {}});
  }

  void route(const http::Request& req, const std::shared_ptr<http::Exchange>& ex) {
    const std::string& p = req.path;
    const bool get = req.method == "GET" || req.method == "HEAD";
    const auto wrong_method = [&](const char* allowed) {
      http::Response r = json_response(405, error_json(req.method + " is not allowed on " + to_valid_utf8(p) +
                                                       " (allowed: " + allowed + ")"));
      r.headers.emplace_back("Allow", allowed);
      ex->respond(std::move(r));
    };
    if (p == "/" || p == "/healthz" || p == "/v1/models" || p == "/v1/toy" || starts_with(p, "/toy/")) {
      if (!get) return wrong_method("GET, HEAD");
      if (p == "/") {
        ex->respond({200, "text/html; charset=utf-8", index_html(), {}});
      } else if (p == "/healthz") {
        ex->respond(json_response(200, {{"status", "ok"},
                                        {"queue_depth", jobs.waiting()},
                                        {"busy", jobs.busy()},
                                        {"queue_capacity", jobs.capacity()},
                                        {"connections", http.open_connections()},
                                        {"max_connections", config.max_connections},
                                        {"refused_connections", http.refused_connections()}}));
      } else if (p == "/v1/models") {
        ex->respond(json_response(200, catalog_json(generator.catalog(), config.limits, jobs.capacity())));
      } else if (p == "/v1/toy") {
        ex->respond(json_response(200, toy_json(config.toy_dir)));
      } else {
        toy_file(p.substr(5), ex);
      }
    } else if (p == "/v1/generate") {
      if (req.method != "POST") return wrong_method("POST");
      jobs.submit(req, ex);
    } else if (starts_with(p, "/v1/jobs/") && p.size() > 9 && p.find('/', 9) == std::string::npos) {
      if (req.method != "DELETE") return wrong_method("DELETE");
      jobs.cancel(p.substr(9), ex);
    } else {
      ex->respond(json_response(404, error_json("no such endpoint: " + req.method + " " + to_valid_utf8(p))));
    }
  }
};

Server::Server(const ServerConfig& config) {
  config.validate();
  impl_ = std::make_unique<Impl>(config);
}

Server::~Server() { stop(); }

int Server::bind() {
  Impl& m = *impl_;
  try {
    return m.http.bind();
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) +
                             " (port in use, or no such address on this machine); pick another with --port/--host");
  }
}

void Server::start() {
  Impl& m = *impl_;
  bind();
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.started || m.stopped) return;
  m.http.start();
  m.started = true;
}

void Server::serve() {
  start();
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mu);
  m.stopped_cv.wait(lock, [&m] { return m.stopped; });
}

void Server::stop() {
  if (!impl_) return;
  Impl& m = *impl_;
  std::lock_guard<std::mutex> once(m.stop_mu);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.stopped) return;
  }
  m.http.stop_accepting();
  m.jobs.shutdown();  // the running job finishes; the others get 503
  m.http.stop(json_response(503, error_json("the server is stopping")));
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.stopped = true;
  }
  m.stopped_cv.notify_all();
}

int Server::port() const { return impl_->http.port(); }

const ModelCatalog& Server::catalog() const { return impl_->generator.catalog(); }

}  // namespace arcflow::server

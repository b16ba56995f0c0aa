// `arcflow serve`: an HTTP server that keeps the teacher and the students loaded and generates
// images on demand, for a web page (served at /) and a small JSON API:
//   GET  /              the page (plain HTML/JS embedded in the binary)
//   GET  /healthz       {"status": "ok", "queue_depth", "busy", "queue_capacity"}
//   GET  /v1/models     the loaded models, classes and limits (api.h: catalog_json)
//   POST /v1/generate   images from the same noise for each requested method (api.h); with
//                       "stream": true as server-sent events with progress (generate_jobs.h)
//   DELETE /v1/jobs/ID  cancels a waiting or running generation
//   GET  /v1/toy        the 2-D toy pictures found in toy_dir (toy_pictures.h); GET /toy/FILE serves them
// HTTP is libmicrohttpd's event loop (http_server.h): slow or idle clients take no thread, idle
// connections close after idle_timeout_s, at most max_connections are open. Requests are parsed and
// checked on the HTTP threads; valid ones become jobs in a bounded JobQueue that one worker thread
// runs in order, so generation never runs twice at once. A request finding the queue full gets 503
// at once; a bad one 400 with {"error", "field"}; unknown paths 404.
// Built from a plain ServerConfig so tests can run it in-process on an ephemeral port.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "arcflow/server/api.h"
#include "arcflow/server/image_generator.h"

namespace arcflow::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: a free port chosen by the system (port() says which)
  std::string teacher = "models/teacher.safetensors";
  std::vector<AdapterFile> adapters = {{"arcflow-2", "models/arcflow-2.safetensors"}};
  std::string toy_dir = "demo/toy";  // pictures of the page's second tab (may be absent)
  std::string device = "cpu";
  size_t queue = 4;        // requests waiting for the worker at most (the running one not counted)
  int http_threads = 0;    // HTTP event-loop threads; 0: 2
  int max_connections = 256;  // open connections at most; more are closed at once
  int idle_timeout_s = 10;    // a connection without traffic for this long is closed
  ServerLimits limits;
  bool log_requests = false;  // one line per request on stdout

  // Throws std::invalid_argument naming the setting (port outside 0..65535, queue < 1, limits,
  // max_connections or idle_timeout_s < 1).
  void validate() const;
};

class Server {
 public:
  // Checks the config and loads the models (errors name the file); does not bind yet.
  explicit Server(const ServerConfig& config);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and returns the port (the chosen one for port 0). Throws std::runtime_error
  // naming host and port when that fails (in use, no such address).
  int bind();
  // Answers requests until stop(); start()s first if needed.
  void serve();
  // bind() and starts answering on background threads; returns once connections are accepted.
  void start();
  // Stops accepting, drops the waiting jobs (their requests get 503), lets the running one finish,
  // sends the answers in flight (up to 2 s), closes every connection and makes serve() return.
  // Thread-safe and idempotent.
  void stop();

  int port() const;
  const ModelCatalog& catalog() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arcflow::server

// The HTTP layer of `arcflow serve`: a small C++ face of GNU libmicrohttpd (Debian
// libmicrohttpd-dev), which runs every connection on a few event-loop threads (epoll) instead of a
// thread per connection. So a slow or idle client costs a little memory, not a thread: with
// cpp-httplib's pool, 8 connections that sent half a request line held all 8 threads and stalled
// /healthz for 9.8 s (issue 17; README "Slow and idle clients").
//
// Limits: at most `max_connections` open connections (more are closed right after accept; the
// client sees the connection closed), a connection with no traffic for `idle_timeout_s` seconds is
// closed (a half-sent request as well as an idle keep-alive one), request bodies above
// `max_body_bytes` get 413.
//
// A handler gets each complete request with its Exchange, and answers at once (respond) or later
// from any thread (keep the shared_ptr; the connection waits without using a thread), or streams
// (start_stream, write..., end). While an answer waits, client_gone() tells whether the client has
// closed its connection, looking at the socket itself (the event loop does not watch a waiting
// connection), and on_abort runs when the exchange ends without the whole answer delivered.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace arcflow::server::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string header(const std::string& name) const;  // case-insensitive; "" when absent
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

class Exchange {
 public:
  struct State;
  explicit Exchange(std::shared_ptr<State> state) : state_(std::move(state)) {}

  // Sends `response` (the first call wins; later ones and calls after start_stream are ignored).
  // Thread-safe.
  void respond(Response response);
  // Starts a 200 answer of unknown length (chunked), e.g. text/event-stream. Thread-safe.
  void start_stream(const std::string& content_type, std::vector<std::pair<std::string, std::string>> headers = {});
  // Queues `chunk` on a started stream; false when the stream has ended or the client is gone.
  bool write(const std::string& chunk);
  // Ends a started stream once the queued chunks are sent.
  void end();
  // True once the client closed its side (read on the socket now) or the exchange is over.
  bool client_gone() const;
  // `fn` runs once (on an event-loop thread) when the exchange ends before its answer was fully
  // delivered: the client went away, the idle timeout, or the server stopping. Set it before the
  // answer can end (in the handler).
  void on_abort(std::function<void()> fn);
  // The answer has started (respond or start_stream was called).
  bool answered() const;

 private:
  std::shared_ptr<State> state_;
};

using Handler = std::function<void(const Request&, const std::shared_ptr<Exchange>&)>;
// Called once per request when its answer is queued: method, path, status.
using Logger = std::function<void(const std::string&, const std::string&, int)>;

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                // 0: a free port
  unsigned max_connections = 256;
  unsigned idle_timeout_s = 10;
  unsigned threads = 2;           // event-loop threads
  size_t max_body_bytes = 64 * 1024;
};

class HttpServer {
 public:
  HttpServer(HttpOptions options, Handler handler, Logger logger = nullptr);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Creates the listening socket; returns the port. Throws std::runtime_error naming host and port.
  int bind();
  // bind() if needed, then serves on background threads until stop(). Throws std::runtime_error
  // when libmicrohttpd cannot start.
  void start();
  // Stops accepting new connections (open ones are served on).
  void stop_accepting();
  // Ends the exchanges still waiting for an answer with `last_word` (e.g. 503), lets the answers in
  // flight go out for up to `grace_ms`, then closes every connection. Idempotent.
  void stop(const Response& last_word, int grace_ms = 2000);

  int port() const;
  size_t open_connections() const;
  size_t refused_connections() const;  // closed at accept for max_connections, since start

  struct Impl;  // libmicrohttpd's side (http_server.cpp)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace arcflow::server::http

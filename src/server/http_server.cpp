// libmicrohttpd behind arcflow/server/http_server.h. How an answer that comes later reaches the
// client: the access handler (an event-loop thread) suspends the connection when the handler left
// no answer, and the thread that answers resumes it; libmicrohttpd then calls the access handler
// again, which queues the answer. A stream is a callback response whose reader suspends the
// connection when it has nothing to send; write() resumes it. Suspending happens under the
// exchange's mutex on the event-loop thread, and only the thread that flips `suspended` back under
// that mutex resumes, so a resume never comes before its suspend and never twice.
#include "arcflow/server/http_server.h"

#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

namespace arcflow::server::http {

std::string Request::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (::strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return "";
}

struct HttpServer::Impl {
  HttpOptions options;
  Handler handler;
  Logger logger;
  int listen_fd = -1;
  int bound_port = -1;
  MHD_Daemon* daemon = nullptr;
  bool quiesced = false;
  std::atomic<bool> stopping{false};
  std::atomic<size_t> open{0}, refused{0};
  std::mutex live_mu;
  std::set<std::shared_ptr<Exchange::State>> live;  // exchanges not yet completed
};

struct Exchange::State {
  std::mutex mu;
  HttpServer::Impl* server = nullptr;
  MHD_Connection* conn = nullptr;  // null once completed
  int fd = -1;
  Request request;
  bool too_large = false, dispatched = false, suspended = false, queued = false, closed = false;
  bool answered = false;
  std::optional<Response> pending;  // a whole answer not yet queued
  bool streaming = false, stream_ended = false;
  Response stream_head;
  std::string stream_buf;
  std::function<void()> on_abort;

  // Called with `mu` held by a thread other than the event loop: takes the connection out of
  // suspension; the caller resumes it after unlocking.
  MHD_Connection* take_suspended() {
    if (!suspended || conn == nullptr) return nullptr;
    suspended = false;
    return conn;
  }
};

namespace {

using StatePtr = std::shared_ptr<Exchange::State>;

std::string error_body(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

MHD_Response* make_response(const Response& r) {
#if MHD_VERSION >= 0x00097701
  MHD_Response* m = MHD_create_response_from_buffer_copy(r.body.size(), r.body.data());
#else
  MHD_Response* m = MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()),
                                                    MHD_RESPMEM_MUST_COPY);
#endif
  if (m == nullptr) return nullptr;
  MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
  for (const auto& [k, v] : r.headers) MHD_add_response_header(m, k.c_str(), v.c_str());
  return m;
}

ssize_t read_stream(void* cls, uint64_t, char* buf, size_t max) {
  Exchange::State& st = **static_cast<StatePtr*>(cls);
  std::lock_guard<std::mutex> lock(st.mu);
  if (!st.stream_buf.empty()) {
    const size_t n = std::min(max, st.stream_buf.size());
    std::memcpy(buf, st.stream_buf.data(), n);
    st.stream_buf.erase(0, n);
    return static_cast<ssize_t>(n);
  }
  if (st.stream_ended) return MHD_CONTENT_READER_END_OF_STREAM;
  if (st.server->stopping || st.conn == nullptr) return MHD_CONTENT_READER_END_WITH_ERROR;
  st.suspended = true;
  MHD_suspend_connection(st.conn);
  return 0;
}

void free_stream(void* cls) { delete static_cast<StatePtr*>(cls); }

// In the access handler, once the request is complete: queue the answer that is there, or wait.
MHD_Result settle(const StatePtr& st, MHD_Connection* c) {
  std::unique_lock<std::mutex> lock(st->mu);
  if (st->queued) return MHD_YES;
  if (!st->pending && !st->streaming && st->server->stopping) {
    st->pending = Response{503, "application/json", error_body("the server is stopping"), {}};
    st->answered = true;
  }
  MHD_Response* resp = nullptr;
  int status = 200;
  if (st->pending) {
    status = st->pending->status;
    resp = make_response(*st->pending);
  } else if (st->streaming) {
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, &read_stream, new StatePtr(st), &free_stream);
    if (resp != nullptr) {
      MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, st->stream_head.content_type.c_str());
      for (const auto& [k, v] : st->stream_head.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
    }
  } else {
    st->suspended = true;  // the answer comes later, from another thread
    MHD_suspend_connection(c);
    return MHD_YES;
  }
  if (resp == nullptr) return MHD_NO;  // out of memory: libmicrohttpd closes the connection
  st->queued = true;
  const std::string method = st->request.method, path = st->request.path;
  HttpServer::Impl* server = st->server;
  lock.unlock();
  const MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(status), resp);
  MHD_destroy_response(resp);
  if (server->logger) server->logger(method, path, status);
  return ok;
}

MHD_Result collect_header(void* cls, MHD_ValueKind, const char* key, const char* value) {
  static_cast<Request*>(cls)->headers.emplace_back(key ? key : "", value ? value : "");
  return MHD_YES;
}

MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method, const char*,
                      const char* upload_data, size_t* upload_size, void** con_cls) {
  auto* server = static_cast<HttpServer::Impl*>(cls);
  if (*con_cls == nullptr) {  // the headers are in
    auto st = std::make_shared<Exchange::State>();
    st->server = server;
    st->conn = c;
    if (const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD))
      st->fd = info->connect_fd;
    st->request.method = method;
    st->request.path = url;
    MHD_get_connection_values(c, MHD_HEADER_KIND, &collect_header, &st->request);
    {
      std::lock_guard<std::mutex> lock(server->live_mu);
      server->live.insert(st);
    }
    *con_cls = new StatePtr(st);
    return MHD_YES;
  }
  const StatePtr st = *static_cast<StatePtr*>(*con_cls);
  if (*upload_size > 0) {  // a piece of the body
    if (!st->too_large) {
      if (st->request.body.size() + *upload_size > server->options.max_body_bytes) {
        st->too_large = true;
        st->request.body.clear();
      } else {
        st->request.body.append(upload_data, *upload_size);
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (!st->dispatched) {
    st->dispatched = true;
    auto ex = std::make_shared<Exchange>(st);
    if (st->too_large) {
      ex->respond({413, "application/json",
                   error_body("request body too large (at most " + std::to_string(server->options.max_body_bytes) +
                              " bytes)"),
                   {}});
    } else {
      try {
        server->handler(st->request, ex);
      } catch (const std::exception& e) {
        ex->respond({500, "application/json", error_body(std::string("internal error: ") + e.what()), {}});
      } catch (...) {
        ex->respond({500, "application/json", error_body("internal error"), {}});
      }
    }
  }
  return settle(st, c);
}

void on_completed(void* cls, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode code) {
  if (con_cls == nullptr || *con_cls == nullptr) return;
  auto* holder = static_cast<StatePtr*>(*con_cls);
  const StatePtr st = *holder;
  delete holder;
  *con_cls = nullptr;
  std::function<void()> abort;
  {
    std::lock_guard<std::mutex> lock(st->mu);
    st->closed = true;
    st->conn = nullptr;
    st->fd = -1;
    if (code != MHD_REQUEST_TERMINATED_COMPLETED_OK) abort = std::move(st->on_abort);
    st->on_abort = nullptr;
  }
  if (abort) abort();
  auto* server = static_cast<HttpServer::Impl*>(cls);
  std::lock_guard<std::mutex> lock(server->live_mu);
  server->live.erase(st);
}

void on_connection(void* cls, MHD_Connection*, void**, MHD_ConnectionNotificationCode code) {
  auto* server = static_cast<HttpServer::Impl*>(cls);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) ++server->open;
  else if (code == MHD_CONNECTION_NOTIFY_CLOSED) --server->open;
}

MHD_Result accept_policy(void* cls, const sockaddr*, socklen_t) {
  auto* server = static_cast<HttpServer::Impl*>(cls);
  if (server->open >= server->options.max_connections) {
    ++server->refused;
    return MHD_NO;  // closed at once
  }
  return MHD_YES;
}

}  // namespace

// ------------------------------------------------------------------------------- Exchange

void Exchange::respond(Response response) {
  MHD_Connection* resume = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->answered || state_->closed) return;
    state_->answered = true;
    state_->pending = std::move(response);
    resume = state_->take_suspended();
  }
  if (resume) MHD_resume_connection(resume);
}

void Exchange::start_stream(const std::string& content_type, std::vector<std::pair<std::string, std::string>> headers) {
  MHD_Connection* resume = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->answered || state_->closed) return;
    state_->answered = true;
    state_->streaming = true;
    state_->stream_head = Response{200, content_type, "", std::move(headers)};
    resume = state_->take_suspended();
  }
  if (resume) MHD_resume_connection(resume);
}

bool Exchange::write(const std::string& chunk) {
  MHD_Connection* resume = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->streaming || state_->stream_ended || state_->closed) return false;
    state_->stream_buf += chunk;
    resume = state_->take_suspended();
  }
  if (resume) MHD_resume_connection(resume);
  return true;
}

void Exchange::end() {
  MHD_Connection* resume = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->streaming || state_->stream_ended) return;
    state_->stream_ended = true;
    resume = state_->take_suspended();
  }
  if (resume) MHD_resume_connection(resume);
}

bool Exchange::client_gone() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->closed || state_->fd < 0) return true;
  // The socket stays open until the completion callback (which takes `mu`) has run. POLLRDHUP: the
  // client closed (or shut down its sending side, which HTTP clients do not do mid-request).
  pollfd p{state_->fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void Exchange::on_abort(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->closed) state_->on_abort = std::move(fn);
}

bool Exchange::answered() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->answered;
}

// ------------------------------------------------------------------------------- HttpServer

HttpServer::HttpServer(HttpOptions options, Handler handler, Logger logger) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
  impl_->logger = std::move(logger);
}

HttpServer::~HttpServer() { stop(Response{503, "application/json", error_body("the server is stopping"), {}}, 0); }

int HttpServer::bind() {
  Impl& m = *impl_;
  if (m.listen_fd >= 0) return m.bound_port;
  const std::string where = m.options.host + ":" + std::to_string(m.options.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(m.options.host.c_str(), std::to_string(m.options.port).c_str(), &hints, &found);
  if (rc != 0) throw std::runtime_error("cannot listen on " + where + ": " + ::gai_strerror(rc));
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr && m.listen_fd < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;  // SO_REUSEADDR only: with SO_REUSEPORT a second server would bind the same port too
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      m.listen_fd = fd;
    } else {
      why = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (m.listen_fd < 0) throw std::runtime_error("cannot listen on " + where + ": " + why);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(m.listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  m.bound_port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return m.bound_port;
}

void HttpServer::start() {
  Impl& m = *impl_;
  bind();
  if (m.daemon != nullptr) return;
  const unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
  // libmicrohttpd's own limit stays above ours, so that it never stops accepting (excess connections
  // would then wait in the kernel's backlog instead of being refused by accept_policy).
  const unsigned hard_limit = 2 * m.options.max_connections + 16;
  const unsigned threads = std::max(1u, m.options.threads);
  m.daemon = MHD_start_daemon(
      flags, 0, &accept_policy, &m, &on_request, &m, MHD_OPTION_LISTEN_SOCKET, static_cast<MHD_socket>(m.listen_fd),
      MHD_OPTION_CONNECTION_LIMIT, hard_limit, MHD_OPTION_CONNECTION_TIMEOUT, m.options.idle_timeout_s,
      MHD_OPTION_NOTIFY_COMPLETED, &on_completed, &m, MHD_OPTION_NOTIFY_CONNECTION, &on_connection, &m,
      MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0u, MHD_OPTION_END);
  if (m.daemon == nullptr)
    throw std::runtime_error("libmicrohttpd could not start on port " + std::to_string(m.bound_port));
}

void HttpServer::stop_accepting() {
  Impl& m = *impl_;
  if (m.daemon != nullptr && !m.quiesced) {
    MHD_quiesce_daemon(m.daemon);  // the listening socket stays ours, closed in stop()
    m.quiesced = true;
  }
}

void HttpServer::stop(const Response& last_word, int grace_ms) {
  Impl& m = *impl_;
  if (m.daemon != nullptr) {
    stop_accepting();
    const auto live = [&m] {
      std::lock_guard<std::mutex> lock(m.live_mu);
      return std::vector<StatePtr>(m.live.begin(), m.live.end());
    };
    for (const StatePtr& st : live()) {
      Exchange ex(st);
      ex.respond(last_word);
      ex.end();
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
    while (std::chrono::steady_clock::now() < deadline && !live().empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // From here no connection is suspended again, and the suspended ones are resumed: stopping the
    // daemon with suspended connections is not allowed.
    m.stopping = true;
    for (const StatePtr& st : live()) {
      MHD_Connection* resume = nullptr;
      {
        std::lock_guard<std::mutex> lock(st->mu);
        resume = st->take_suspended();
      }
      if (resume) MHD_resume_connection(resume);
    }
    MHD_stop_daemon(m.daemon);
    m.daemon = nullptr;
  }
  if (m.listen_fd >= 0) {
    ::close(m.listen_fd);
    m.listen_fd = -1;
  }
}

int HttpServer::port() const { return impl_->bound_port; }
size_t HttpServer::open_connections() const { return impl_->open; }
size_t HttpServer::refused_connections() const { return impl_->refused; }

}  // namespace arcflow::server::http

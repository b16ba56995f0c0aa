// Shared by the tests of `arcflow serve` (test_server*.cpp): the shipped models, a server started
// in-process on 127.0.0.1:<ephemeral> with a client for it, a base64 decoder, the events of a
// streamed answer, and raw loopback sockets for slow and idle clients. Loopback only.
#pragma once

#ifdef ARCFLOW_HAVE_SERVER
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "arcflow/server/server.h"
#include "temp_dir.h"

namespace arcflow::test {

inline const std::string kRoot = ARCFLOW_SOURCE_DIR;
inline const std::string kTeacher = kRoot + "/models/teacher.safetensors";
inline const std::string kArcflow = kRoot + "/models/arcflow-2.safetensors";
inline const std::string kLinear = kRoot + "/models/linear-2.safetensors";

inline bool have_models() { return path_exists(kTeacher) && path_exists(kArcflow) && path_exists(kLinear); }

inline server::ServerConfig test_config(size_t queue = 4) {
  server::ServerConfig c;
  c.port = 0;
  c.teacher = kTeacher;
  c.adapters = {{"arcflow-2", kArcflow}, {"linear-2", kLinear}};
  c.toy_dir = "";
  c.queue = queue;
  return c;
}

inline std::string b64decode(const std::string& s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : s) {
    const int v = val(c);
    if (v < 0) break;  // '=' padding
    buf = ((buf << 6) | static_cast<uint32_t>(v)) & 0xFFFFFFu;  // only the last 24 bits are ever read
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buf >> bits) & 0xFF);
    }
  }
  return out;
}

// A server on 127.0.0.1:<ephemeral> and a client for it.
struct Running {
  std::unique_ptr<server::Server> server;
  std::unique_ptr<httplib::Client> client;
  explicit Running(const server::ServerConfig& c) : server(std::make_unique<server::Server>(c)) {
    server->start();
    client = std::make_unique<httplib::Client>("127.0.0.1", server->port());
    client->set_read_timeout(300, 0);
  }
  httplib::Result post(const nlohmann::json& body) {
    return client->Post("/v1/generate", body.dump(), "application/json");
  }
};

// One server-sent event.
struct Event {
  std::string name;
  nlohmann::json data;
  double at_s = 0;  // seconds since the request was sent
};

// POSTs `body` to /v1/generate and splits the answer into events as they arrive. `on_event`
// returns false to hang up (the client closes its connection). The HTTP status is in `status`.
inline std::vector<Event> stream_events(int port, const nlohmann::json& body, int& status,
                                        const std::function<bool(const Event&)>& on_event = nullptr) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(120, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/generate";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::vector<Event> events;
  std::string buf;
  bool go_on = true;
  const auto t0 = std::chrono::steady_clock::now();
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buf.append(data, len);
    for (size_t end; go_on && (end = buf.find("\n\n")) != std::string::npos;) {
      const std::string block = buf.substr(0, end);
      buf.erase(0, end + 2);
      Event e;
      e.at_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      size_t pos = 0;
      while (pos < block.size()) {
        size_t nl = block.find('\n', pos);
        if (nl == std::string::npos) nl = block.size();
        const std::string line = block.substr(pos, nl - pos);
        if (line.rfind("event: ", 0) == 0) e.name = line.substr(7);
        if (line.rfind("data: ", 0) == 0) e.data = nlohmann::json::parse(line.substr(6), nullptr, false);
        pos = nl + 1;
      }
      events.push_back(e);
      if (on_event && !on_event(e)) go_on = false;
    }
    return go_on;
  };
  auto res = cli.send(req);
  status = res ? res->status : -1;
  if (res && events.empty() && !res->body.empty()) {  // not a stream: an error answer
    Event e;
    e.name = "body";
    e.data = nlohmann::json::parse(res->body, nullptr, false);
    events.push_back(e);
  }
  return events;
}

// A TCP connection to 127.0.0.1:port (-1 on failure).
inline int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Seconds until the server closed `fd` (end of file or reset), or a negative number when it was
// still open after `limit_s`. Data the server sends before closing is skipped.
inline double seconds_until_closed(int fd, double limit_s) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (t >= limit_s) return -1;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>((limit_s - t) * 1000) + 1) > 0) {
      char b[512];
      if (::recv(fd, b, sizeof b, 0) <= 0)
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }
}

}  // namespace arcflow::test

#endif  // ARCFLOW_HAVE_SERVER

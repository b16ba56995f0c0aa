// `arcflow serve`, issue 17: POST /v1/generate with "stream": true (server-sent events in order:
// queued, started, one progress per sampler step, result), the place in the line while waiting,
// and cancelling: a client that hangs up (streamed or not) or DELETE /v1/jobs/ID stops a running
// job after its current step and frees the worker, a waiting one leaves the line. The server runs
// in-process on an ephemeral loopback port with the shipped models; timings are printed, and only
// bounded against the length of the job that was cancelled.
#ifdef ARCFLOW_HAVE_SERVER
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "server_helpers.h"

using namespace arcflow;
using namespace arcflow::test;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<std::string> names(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) out.push_back(e.name);
  return out;
}

// Seconds until /healthz says the worker is idle (negative after `limit_s`).
double seconds_until_idle(httplib::Client& cli, double limit_s) {
  const auto t0 = Clock::now();
  while (seconds_since(t0) < limit_s) {
    if (auto h = cli.Get("/healthz"))
      if (!json::parse(h->body)["busy"].get<bool>() && json::parse(h->body)["queue_depth"] == 0) return seconds_since(t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

// A long teacher job: 200 guided steps (400 NFE) for 2 images, several seconds on any CPU.
const json kLongJob = {{"n", 2}, {"seed", 3}, {"method", "teacher"}, {"teacher_steps", 200}, {"stream", true}};

}  // namespace

TEST(ServerStream, QueuedStartedOneProgressPerStepThenTheResult) {
  if (!have_models()) GTEST_SKIP() << "shipped models not found";
  Running run(test_config());
  json body = {{"class", 3}, {"seed", 7}, {"n", 2}, {"method", {"teacher", "arcflow-2"}}, {"teacher_steps", 4}};
  body["stream"] = true;
  int status = 0;
  const std::vector<Event> ev = stream_events(run.server->port(), body, status);
  ASSERT_EQ(status, 200);
  const std::vector<std::string> expected = {"queued",   "started",  "progress", "progress", "progress",
                                             "progress", "progress", "progress", "result"};
  ASSERT_EQ(names(ev), expected);
  const std::string id = ev[0].data["job"];
  EXPECT_EQ(id.size(), 16u);
  EXPECT_LE(ev[0].data["position"].get<int>(), 1);
  EXPECT_GE(ev[1].data["queue_ms"].get<double>(), 0.0);
  // Teacher steps 1..4 of 4, then the student's 1..2 of 2, with growing elapsed times.
  const std::vector<std::pair<std::string, int>> steps = {{"teacher", 4}, {"arcflow-2", 2}};
  size_t k = 2;
  for (const auto& [method, total] : steps) {
    double last_ms = 0;
    for (int s = 1; s <= total; ++s, ++k) {
      const json& p = ev[k].data;
      EXPECT_EQ(p["job"], id);
      EXPECT_EQ(p["method"], method) << p.dump();
      EXPECT_EQ(p["step"], s) << p.dump();
      EXPECT_EQ(p["total"], total) << p.dump();
      EXPECT_GE(p["elapsed_ms"].get<double>(), last_ms) << p.dump();
      last_ms = p["elapsed_ms"].get<double>();
    }
  }
  // The result is the non-streamed answer: same images, plus the job id.
  const json& result = ev.back().data;
  EXPECT_EQ(result["job"], id);
  body["stream"] = false;
  auto plain = run.post(body);
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->status, 200) << plain->body;
  const json pj = json::parse(plain->body);
  ASSERT_EQ(result["results"].size(), 2u);
  EXPECT_EQ(result["results"][0]["images"], pj["results"][0]["images"]);
  EXPECT_EQ(result["results"][1]["images"], pj["results"][1]["images"]);
  EXPECT_EQ(result["labels"], pj["labels"]);
  std::printf("stream of a 4-step teacher + arcflow-2 request (n 2): first event after %.1f ms, result after %.1f ms\n",
              ev.front().at_s * 1000, ev.back().at_s * 1000);
}

TEST(ServerStream, ThePlaceInTheLineIsReportedWhileWaiting) {
  if (!have_models()) GTEST_SKIP() << "shipped models not found";
  Running run(test_config());
  const int port = run.server->port();
  std::promise<void> a_started, b_queued;
  auto a = std::async(std::launch::async, [&] {
    int st = 0;
    bool told = false;
    json body = kLongJob;
    body["teacher_steps"] = 40;
    auto ev = stream_events(port, body, st, [&](const Event& e) {
      if (e.name == "started" && !told) told = true, a_started.set_value();
      return true;
    });
    return ev;
  });
  a_started.get_future().wait();
  const json small = {{"n", 1}, {"seed", 1}, {"method", "arcflow-2"}, {"stream", true}};
  auto b = std::async(std::launch::async, [&] {
    int st = 0;
    bool told = false;
    auto ev = stream_events(port, small, st, [&](const Event& e) {
      if (e.name == "queued" && !told) told = true, b_queued.set_value();
      return true;
    });
    return ev;
  });
  b_queued.get_future().wait();
  int c_status = 0;
  const std::vector<Event> c = stream_events(port, small, c_status);
  const std::vector<Event> bev = b.get();
  a.get();
  ASSERT_EQ(c_status, 200);
  ASSERT_GE(bev.size(), 2u);
  EXPECT_EQ(bev[0].name, "queued");
  EXPECT_EQ(bev[0].data["position"], 1) << bev[0].data.dump();
  EXPECT_EQ(bev.back().name, "result");
  // C waited behind A (running) and B: place 2, then 1 when B's turn came, then its own turn.
  ASSERT_GE(c.size(), 3u);
  EXPECT_EQ(c[0].name, "queued");
  EXPECT_EQ(c[0].data["position"], 2) << c[0].data.dump();
  EXPECT_EQ(c[1].name, "queued");
  EXPECT_EQ(c[1].data["position"], 1) << c[1].data.dump();
  EXPECT_EQ(c[2].name, "started");
  EXPECT_EQ(c.back().name, "result");
}

TEST(ServerCancel, AClientThatHangsUpFreesTheWorkerAtTheNextStep) {
  if (!have_models()) GTEST_SKIP() << "shipped models not found";
  Running run(test_config());
  int status = 0;
  int progress = 0;
  double step_ms = 0;
  const std::vector<Event> ev = stream_events(run.server->port(), kLongJob, status, [&](const Event& e) {
    if (e.name == "progress" && ++progress == 3) {
      step_ms = e.data["elapsed_ms"].get<double>() / 3;
      return false;  // hang up
    }
    return true;
  });
  ASSERT_EQ(progress, 3);
  const double left_s = (200 - 3) * step_ms / 1000;
  const double free_s = seconds_until_idle(*run.client, 60);
  std::printf("hang-up: steps of %.1f ms, worker free %.1f ms after the client closed (the job had %.2f s left)\n",
              step_ms, free_s * 1000, left_s);
  ASSERT_GE(free_s, 0.0) << "the worker was still busy 60 s after the client left";
  EXPECT_LT(free_s, std::max(1.0, left_s / 4)) << "the job ran on after its client left";

  // The worker takes the next request at once.
  auto next = run.post({{"n", 1}, {"method", "arcflow-2"}});
  ASSERT_TRUE(next);
  ASSERT_EQ(next->status, 200);
  EXPECT_LT(json::parse(next->body)["queue_ms"].get<double>(), 1000.0);

  // A plain (not streamed) request whose client gives up is cancelled the same way.
  json plain = kLongJob;
  plain.erase("stream");
  const auto t0 = Clock::now();
  {
    httplib::Client impatient("127.0.0.1", run.server->port());
    impatient.set_read_timeout(1, 0);
    auto r = impatient.Post("/v1/generate", plain.dump(), "application/json");
    EXPECT_FALSE(r) << "the 400-NFE request should outlast a 1 s read timeout";
  }  // the client closes its connection
  const double gave_up_s = seconds_since(t0);
  const double free2_s = seconds_until_idle(*run.client, 60);
  std::printf("plain request: the client gave up after %.2f s, worker free %.1f ms later\n", gave_up_s,
              free2_s * 1000);
  ASSERT_GE(free2_s, 0.0);
  EXPECT_LT(free2_s, std::max(1.0, left_s / 4));
}

TEST(ServerCancel, DeleteStopsTheRunningJobAndTakesAWaitingOneOutOfTheLine) {
  if (!have_models()) GTEST_SKIP() << "shipped models not found";
  Running run(test_config());
  const int port = run.server->port();
  std::promise<std::string> a_id, b_id;
  std::promise<void> a_running;
  auto a = std::async(std::launch::async, [&] {
    int st = 0, progress = 0;
    bool id_told = false;
    auto ev = stream_events(port, kLongJob, st, [&](const Event& e) {
      if (e.name == "queued" && !id_told) id_told = true, a_id.set_value(e.data["job"]);
      if (e.name == "progress" && ++progress == 2) a_running.set_value();
      return true;
    });
    return ev;
  });
  const std::string ida = a_id.get_future().get();
  a_running.get_future().wait();
  auto b = std::async(std::launch::async, [&] {
    int st = 0;
    bool id_told = false;
    return stream_events(port, {{"n", 1}, {"method", "arcflow-2"}, {"stream", true}}, st, [&](const Event& e) {
      if (e.name == "queued" && !id_told) id_told = true, b_id.set_value(e.data["job"]);
      return true;
    });
  });
  const std::string idb = b_id.get_future().get();

  auto del_b = run.client->Delete(("/v1/jobs/" + idb).c_str());
  ASSERT_TRUE(del_b);
  EXPECT_EQ(del_b->status, 200) << del_b->body;
  EXPECT_EQ(json::parse(del_b->body)["was"], "waiting");
  const std::vector<Event> bev = b.get();
  ASSERT_EQ(names(bev), (std::vector<std::string>{"queued", "error"}));
  EXPECT_EQ(bev[1].data["status"], 409);

  const auto t0 = Clock::now();
  auto del_a = run.client->Delete(("/v1/jobs/" + ida).c_str());
  ASSERT_TRUE(del_a);
  EXPECT_EQ(del_a->status, 200) << del_a->body;
  EXPECT_EQ(json::parse(del_a->body)["was"], "running");
  const std::vector<Event> aev = a.get();
  const double ended_s = seconds_since(t0);
  ASSERT_FALSE(aev.empty());
  EXPECT_EQ(aev.back().name, "error");
  EXPECT_EQ(aev.back().data["status"], 409);
  EXPECT_NE(aev.back().data["error"].get<std::string>().find("DELETE"), std::string::npos);
  int last_step = 0;
  double step_ms = 0;
  for (const Event& e : aev)
    if (e.name == "progress") last_step = e.data["step"], step_ms = e.data["elapsed_ms"].get<double>() / last_step;
  EXPECT_LT(last_step, 200);
  const double free_s = seconds_until_idle(*run.client, 60);
  std::printf("DELETE: stream ended %.1f ms after it, worker free %.1f ms later (steps of %.1f ms, stopped at %d/200)\n",
              ended_s * 1000, free_s * 1000, step_ms, last_step);
  EXPECT_LT(ended_s, std::max(1.0, (200 - last_step) * step_ms / 4000));

  auto again = run.client->Delete(("/v1/jobs/" + ida).c_str());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 404);
  auto wrong = run.client->Get(("/v1/jobs/" + ida).c_str());
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
}

#endif  // ARCFLOW_HAVE_SERVER

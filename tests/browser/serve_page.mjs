// End-to-end test of `arcflow serve`'s page in headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core): starts the server on a free port, opens the page, picks a class, lowers the
// teacher's steps (for speed), clicks Generate, waits until the teacher's and the student's images
// have loaded (naturalWidth > 0), checks the timings and the full progress bars are shown, starts a
// long request and cancels it (the server's worker must be free soon after), opens the toy tab,
// saves a screenshot, stops the server. Exit status 0 on success, 1 on failure.
//
// Usage: node serve_page.mjs ARCFLOW_BINARY [SCREENSHOT.png]   (from the repository root: the
// server reads models/). CHROMIUM=/path overrides the browser.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { resolve } from "node:path";
import { chromium } from "playwright-core";

const bin = process.argv[2];
const shot = resolve(process.argv[3] || "build/serve-page.png");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!bin) {
  console.error("usage: node serve_page.mjs ARCFLOW_BINARY [SCREENSHOT.png]");
  process.exit(2);
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function waitHealthy(url, server, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (server.exitCode !== null) throw new Error("arcflow serve exited with status " + server.exitCode);
    try {
      const r = await fetch(url + "/healthz");
      if (r.ok) return;
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("arcflow serve did not answer /healthz within " + ms / 1000 + " s");
}

const port = await freePort();
const url = "http://127.0.0.1:" + port;
const serverLog = [];
const server = spawn(bin, ["serve", "--port", String(port), "--host", "127.0.0.1", "--toy-dir", process.env.TOY_DIR || "demo/toy"],
                     { stdio: ["ignore", "pipe", "pipe"] });
server.stdout.on("data", (d) => serverLog.push(d.toString()));
server.stderr.on("data", (d) => serverLog.push(d.toString()));

let browser = null;
let failed = false;
const t0 = Date.now();
try {
  await waitHealthy(url, server, 60000);
  browser = await chromium.launch({
    executablePath: browserPath,
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(url + "/");
  // The class list comes from /v1/models: wait for it, then pick "Trouser" (class 1).
  await page.waitForSelector("#class option[value='1']", { state: "attached", timeout: 15000 });
  await page.selectOption("#class", "1");
  await page.fill("#seed", "123");
  await page.fill("#n", "3");
  await page.fill("#teacher-steps", "10");
  if (await page.inputValue("#student") !== "arcflow-2") throw new Error("the student selector should default to arcflow-2");
  await page.click("#generate");
  // Both grids must show n loaded images.
  await page.waitForFunction(() => {
    const loaded = (id) => [...document.querySelectorAll("#" + id + " img")].filter((i) => i.complete && i.naturalWidth > 0);
    return loaded("grid-teacher").length === 3 && loaded("grid-student").length === 3;
  }, null, { timeout: 120000 });
  const info = await page.evaluate(() => ({
    teacherTitle: document.querySelector("#title-teacher").textContent,
    studentTitle: document.querySelector("#title-student").textContent,
    teacherTime: document.querySelector("#time-teacher").textContent,
    studentTime: document.querySelector("#time-student").textContent,
    width: document.querySelector("#grid-student img").naturalWidth,
    caption: document.querySelector("#grid-teacher figcaption").textContent,
    status: document.querySelector("#status").textContent,
    teacherProgress: document.querySelector("#progress-teacher").textContent,
    studentProgress: document.querySelector("#progress-student").textContent,
    teacherBar: document.querySelector("#bar-teacher").style.width,
  }));
  console.log(JSON.stringify(info));
  if (info.width !== 28) throw new Error("expected 28-pixel images, got " + info.width);
  if (!/20 NFE/.test(info.teacherTitle)) throw new Error("teacher title should say 20 NFE: " + info.teacherTitle);
  if (!/arcflow-2/.test(info.studentTitle)) throw new Error("student title should name arcflow-2: " + info.studentTitle);
  if (!/ms|s\b/.test(info.teacherTime) || !/ms|s\b/.test(info.studentTime)) throw new Error("timings missing");
  if (info.caption !== "Trouser") throw new Error("captions should name the chosen class, got " + info.caption);
  if (!/^step 10 of 10/.test(info.teacherProgress) || parseFloat(info.teacherBar) !== 100)
    throw new Error("the teacher's progress should end at step 10 of 10: " + info.teacherProgress + " " + info.teacherBar);
  if (!/^step 2 of 2/.test(info.studentProgress)) throw new Error("student progress: " + info.studentProgress);
  await page.screenshot({ path: shot, fullPage: true });
  console.log("screenshot: " + shot);

  // A long request, cancelled from the page: the server's worker is free again soon after.
  await page.fill("#teacher-steps", "200");
  await page.fill("#n", "4");
  await page.click("#generate");
  await page.waitForFunction(() => /^step /.test(document.querySelector("#progress-teacher").textContent),
                             null, { timeout: 60000 });
  await page.screenshot({ path: shot.replace(/\.png$/, "-progress.png"), fullPage: true });
  const tCancel = Date.now();
  await page.click("#cancel");
  await page.waitForFunction(() => /^Cancelled/.test(document.querySelector("#status").textContent), null,
                             { timeout: 15000 });
  let freeMs = -1;
  while (Date.now() - tCancel < 20000) {
    const h = await (await fetch(url + "/healthz")).json();
    if (!h.busy && h.queue_depth === 0) { freeMs = Date.now() - tCancel; break; }
    await new Promise((r) => setTimeout(r, 20));
  }
  if (freeMs < 0) throw new Error("the worker was still busy 20 s after Cancel");
  console.log("cancel: the server's worker was free " + freeMs + " ms after the Cancel click");
  await page.fill("#teacher-steps", "10");

  // A bad value is reported with the field's name.
  await page.fill("#n", "99");
  await page.click("#generate");
  await page.waitForFunction(() => document.querySelector("#status").classList.contains("error"), null, { timeout: 15000 });
  const err = await page.textContent("#status");
  if (!/'n'/.test(err)) throw new Error("the error should name the field n: " + err);

  // The toy tab shows the pictures or says which command makes them.
  await page.click("#tab-toy");
  await page.waitForFunction(() => {
    const t = document.querySelector("#toy-info").textContent;
    return t && t !== "Loading...";
  }, null, { timeout: 15000 });
  const toy = await page.evaluate(() => ({
    text: document.querySelector("#toy-info").textContent,
    pictures: document.querySelectorAll("#toy-pictures img").length,
  }));
  if (toy.pictures === 0 && !/arcflow (demo|toy)/.test(toy.text)) throw new Error("toy tab: " + toy.text);
  if (toy.pictures > 0) {
    await page.waitForFunction(() => [...document.querySelectorAll("#toy-pictures img")].every((i) => i.complete && i.naturalWidth > 0),
                               null, { timeout: 15000 });
  }
  await page.screenshot({ path: shot.replace(/\.png$/, "-toy.png"), fullPage: true });
  console.log("toy tab: " + (toy.pictures ? toy.pictures + " pictures" : toy.text));
  if (pageErrors.length) throw new Error("page errors: " + pageErrors.join("; "));
  console.log("ok: page generated and showed both image grids in " + ((Date.now() - t0) / 1000).toFixed(1) + " s");
} catch (e) {
  failed = true;
  console.error("FAIL: " + (e && e.stack ? e.stack : e));
  console.error("server output:\n" + serverLog.join(""));
} finally {
  if (browser) await browser.close().catch(() => {});
  server.kill("SIGINT");
  const stopped = await Promise.race([
    new Promise((r) => server.once("exit", () => r(true))),
    new Promise((r) => setTimeout(() => r(false), 20000)),
  ]);
  if (!stopped) {
    console.error("FAIL: arcflow serve did not stop within 20 s of SIGINT");
    server.kill("SIGKILL");
    failed = true;
  }
}
process.exit(failed ? 1 : 0);

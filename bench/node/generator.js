// W7's load generator: socket.io-client, the library most users' clients run, not
// the benchmark's own lean clients. RECEIVERS websocket clients join one room
// through the URL (HAProxy), one more publishes into it at RATE a second for
// SECONDS, and every receiver times each message from its send (one process, one
// clock). It prints JSON lines on stdout: {"event":"ready"} once everyone has
// joined, {"event":"start"} when publishing begins, then {"event":"result", ...}.
"use strict";

const { io } = require("socket.io-client");
const { parseArgs } = require("node:util");

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    receivers: { type: "string", default: "200" },
    room: { type: "string", default: "w7" },
    rate: { type: "string", default: "10" },
    seconds: { type: "string", default: "8" },
    size: { type: "string", default: "100" },
    drain: { type: "string", default: "2" },
  },
});

const receivers = Number(options.receivers);
const rate = Number(options.rate);
const seconds = Number(options.seconds);
const size = Number(options.size);
const url = new URL(options.url);
const CONNECT_AT_ONCE = 50;

function say(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function fail(why) {
  say({ event: "error", error: String(why) });
  process.exit(1);
}

function connect() {
  // the path keeps HAProxy's public prefix (/wsk), rewritten to / before a node
  const socket = io(url.origin, {
    path: `${url.pathname.replace(/\/$/, "")}/socket.io/`,
    transports: ["websocket"],
    reconnection: false,
    timeout: 20000,
  });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(err));
  });
}

function call(socket, event, data) {
  return new Promise((resolve, reject) => {
    socket.timeout(20000).emit(event, data, (err, reply) => {
      if (err) reject(err);
      else if (reply && reply.error) reject(new Error(reply.error));
      else resolve(reply);
    });
  });
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round(sorted[Math.max(0, index)] * 1000) / 1000;
}

async function main() {
  const latencies = [];
  let received = 0;
  let publishing = false;
  const clients = [];
  for (let i = 0; i < receivers; i += CONNECT_AT_ONCE) {
    const batch = [];
    for (let j = i; j < Math.min(receivers, i + CONNECT_AT_ONCE); j++) batch.push(connect());
    clients.push(...(await Promise.all(batch)));
  }
  for (const socket of clients) {
    socket.on("message", (message) => {
      if (!publishing) return;
      const data = String(message && message.data);
      const stamp = data.slice(0, data.indexOf("~", 1)).slice(1);
      latencies.push(performance.now() - Number(stamp));
      received += 1;
    });
  }
  await Promise.all(clients.map((socket) => call(socket, "join", { room: options.room })));
  const publisher = await connect();
  let disconnects = 0;
  for (const socket of [...clients, publisher]) socket.on("disconnect", () => (disconnects += 1));
  say({ event: "ready" });

  const total = Math.max(1, Math.round(rate * seconds));
  const pad = "x".repeat(size);
  let sent = 0;
  let acked = 0;
  publishing = true;
  say({ event: "start" });
  const started = performance.now();
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      while (sent < due) {
        const stamp = `~${performance.now()}~`;
        publisher.emit(
          "publish",
          { room: options.room, data: stamp + pad.slice(stamp.length) },
          () => (acked += 1),
        );
        sent += 1;
      }
      if (sent >= total) resolve();
      else setTimeout(tick, Math.max(0, started + (sent / rate) * 1000 - performance.now()));
    };
    tick();
  });
  const sendSeconds = (performance.now() - started) / 1000;
  const expected = sent * receivers;
  const deadline = performance.now() + Number(options.drain) * 1000;
  while ((received < expected || acked < sent) && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  publishing = false;
  latencies.sort((a, b) => a - b);
  say({
    event: "result",
    sent,
    acked,
    received,
    expected,
    send_seconds: Math.round(sendSeconds * 1000) / 1000,
    disconnects,
    p50_ms: percentile(latencies, 50),
    p95_ms: percentile(latencies, 95),
    p99_ms: percentile(latencies, 99),
  });
  for (const socket of [...clients, publisher]) socket.close();
  process.exit(0);
}

main().catch(fail);

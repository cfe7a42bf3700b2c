// The Node.js reference node for wsk's benchmark: socket.io 4 clustered with
// @socket.io/redis-adapter over the `redis` client (or, with --adapter streams,
// @socket.io/redis-streams-adapter, which connection-state recovery needs across
// nodes: --recovery-window SECONDS, 0 off), answering the same events as
// a wsk node (whoami, join, leave, publish, the okok heartbeat) with the same
// settings (compression off, the same ping interval and timeout, Socket.IO at /,
// GET /healthz answered before Socket.IO sees the request).
//
//   node server.js --port 5001 --node-name node1 --redis-url redis://127.0.0.1:6379/0
//   node server.js ... --adapter streams --recovery-window 120

"use strict";

const http = require("node:http");
const os = require("node:os");
const { parseArgs } = require("node:util");
const { Server: EngineServer } = require("engine.io");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createAdapter: createStreamsAdapter } = require("@socket.io/redis-streams-adapter");
const { createClient } = require("redis");

const MAX_ROOM_LENGTH = 128;

function readOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "5000" },
      "node-name": { type: "string", default: "" },
      "redis-url": { type: "string", default: "redis://127.0.0.1:6379/0" },
      channel: { type: "string", default: "wsk" },
      "heartbeat-interval": { type: "string", default: "30" },
      "heartbeat-jitter": { type: "string", default: "10" },
      "ping-interval": { type: "string", default: "25" },
      "ping-timeout": { type: "string", default: "20" },
      "max-payload": { type: "string", default: "1000000" },
      backlog: { type: "string", default: "1024" },
      adapter: { type: "string", default: "pubsub" },
      "recovery-window": { type: "string", default: "0" },
    },
    strict: true,
  });
  const number = (name) => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value < 0) {
      console.error(`server.js: error: --${name}=${values[name]}: not a number >= 0`);
      process.exit(2);
    }
    return value;
  };
  if (!["pubsub", "streams"].includes(values.adapter)) {
    console.error(`server.js: error: --adapter=${values.adapter}: pubsub or streams`);
    process.exit(2);
  }
  return {
    host: values.host,
    port: number("port"),
    nodeName: values["node-name"] || `${os.hostname()}:${values.port}`,
    redisUrl: values["redis-url"],
    channel: values.channel,
    heartbeatInterval: number("heartbeat-interval"),
    heartbeatJitter: number("heartbeat-jitter"),
    pingInterval: number("ping-interval"),
    pingTimeout: number("ping-timeout"),
    maxPayload: number("max-payload"),
    backlog: number("backlog"),
    adapter: values.adapter,
    recoveryWindow: number("recovery-window"),
  };
}

class BadRequest extends Error {}

function roomOf(payload, required) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new BadRequest("payload must be an object");
  }
  const room = payload.room;
  if ((room === undefined || room === null) && !required) {
    return null;
  }
  if (typeof room !== "string" || room.length === 0 || room.length > MAX_ROOM_LENGTH) {
    throw new BadRequest(`room must be a string of 1 to ${MAX_ROOM_LENGTH} characters`);
  }
  return room;
}

// Register `fn` for `event`; its return value is the acknowledgement, a
// BadRequest becomes {error}, as on a wsk node.
function answer(socket, event, fn) {
  socket.on(event, (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    let reply;
    try {
      reply = fn(args[0]);
    } catch (err) {
      if (!(err instanceof BadRequest)) throw err;
      reply = { error: err.message };
    }
    if (ack) ack(reply);
  });
}

// The first IPv4 address of a non-loopback interface, as a wsk node reports it.
function privateIpv4() {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses || []) {
      if (address.family === "IPv4" && !address.internal) return address.address;
    }
  }
  return "127.0.0.1";
}

async function main() {
  const options = readOptions(process.argv.slice(2));
  const pubClient = createClient({ url: options.redisUrl });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    client.on("error", (err) => console.error(`redis: ${err.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);

  // engine.io bound by hand, so that /healthz is answered before Socket.IO,
  // which would otherwise claim every path under "/"
  const engine = new EngineServer({
    pingInterval: options.pingInterval * 1000,
    pingTimeout: options.pingTimeout * 1000,
    maxHttpBufferSize: options.maxPayload,
    perMessageDeflate: false,
    httpCompression: false,
    cors: { origin: "*" },
  });
  const recovery =
    options.recoveryWindow > 0
      ? {
          connectionStateRecovery: {
            maxDisconnectionDuration: options.recoveryWindow * 1000,
            skipMiddlewares: true,
          },
        }
      : {};
  const io = new Server({ serveClient: false, ...recovery });
  io.bind(engine);
  if (options.adapter === "streams") {
    io.adapter(createStreamsAdapter(pubClient, { streamName: `${options.channel}:stream` }));
  } else {
    io.adapter(createAdapter(pubClient, subClient, { key: options.channel }));
  }

  io.on("connection", (socket) => {
    answer(socket, "whoami", () => ({ node: options.nodeName, sid: socket.id }));
    answer(socket, "join", (data) => {
      const room = roomOf(data, true);
      socket.join(room);
      return { node: options.nodeName, room };
    });
    answer(socket, "leave", (data) => {
      const room = roomOf(data, true);
      socket.leave(room);
      return { node: options.nodeName, room };
    });
    answer(socket, "publish", (data) => {
      const room = roomOf(data, false);
      if (!("data" in data)) throw new BadRequest("payload must have a data field");
      const message = { from: socket.id, node: options.nodeName, room, data: data.data };
      (room === null ? io : io.to(room)).emit("message", message);
      return { node: options.nodeName };
    });
  });

  const server = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      const up = pubClient.isReady && subClient.isReady;
      const body = JSON.stringify({
        status: up ? "ok" : "unavailable",
        node: options.nodeName,
        redis: up ? "up" : "down",
        clients: engine.clientsCount,
      });
      res.writeHead(up ? 200 : 503, {
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
        "Content-Length": Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    engine.handleRequest(req, res);
  });
  server.on("upgrade", (req, socket, head) => engine.handleUpgrade(req, socket, head));
  server.listen({ host: options.host, port: options.port, backlog: options.backlog }, () => {
    console.log(`node ${options.nodeName} serving Socket.IO at / on ${options.host}:${options.port}`);
  });

  const hostIp = privateIpv4();
  const heartbeat = () => {
    const delay = options.heartbeatInterval + Math.random() * options.heartbeatJitter;
    setTimeout(() => {
      io.emit("okok", {
        node: options.nodeName,
        host: hostIp,
        text: `I am the host: ${hostIp}. I am healthy.`,
        time: Date.now() / 1000,
      });
      heartbeat();
    }, delay * 1000).unref();
  };
  heartbeat();

  const stop = () => {
    server.close();
    engine.close();
    Promise.allSettled([pubClient.quit(), subClient.quit()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

// A socket.io-client (Node) that reports what happens to it as JSON lines on stdout.
// Usage: node client.js URL PATH TRANSPORTS SECONDS [ROOM]
// TRANSPORTS is websocket, polling or polling,websocket. Each connect is reported with
// whether the session was recovered, and followed by a whoami (and a join of ROOM,
// unless the session came back with its rooms); every event received is printed; the
// process exits after SECONDS. WSK_TEST_TOKEN, when set, is sent as the connect's auth:
// {token}.
const readline = require("node:readline");
const { io } = require("socket.io-client");

const [url, path, transports, seconds, room] = process.argv.slice(2);
const report = (what, data) => console.log(JSON.stringify({ what, data, t: Date.now() }));

const socket = io(url, {
  path,
  transports: transports.split(","),
  reconnectionDelay: 200,
  reconnectionDelayMax: 1000,
  randomizationFactor: 0,
  // keeps cookies in Node, so that the sticky-session cookie goes with every poll
  withCredentials: true,
  ...(process.env.WSK_TEST_TOKEN ? { auth: { token: process.env.WSK_TEST_TOKEN } } : {}),
});

socket.on("connect", () => {
  report("connect", { id: socket.id, recovered: Boolean(socket.recovered) });
  socket.emit("whoami", (answer) => report("whoami", answer));
  if (room && !socket.recovered) {
    socket.emit("join", { room }, (answer) => report("ack", { event: "join", answer }));
  }
});
socket.on("disconnect", (reason) => report("disconnect", reason));
socket.on("connect_error", (error) => report("connect_error", error.message));
socket.onAny((event, ...args) => report("event", { event, args }));

// one JSON command per line: {"event": ..., "data": ...}; "__break__" drops the
// transport under the socket, as a lost connection would, and reconnects after
// data.delay ms
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const { event, data } = JSON.parse(line);
  if (event === "__break__") {
    const delay = (data && data.delay) || 200;
    socket.io.reconnectionDelay(delay);
    socket.io.reconnectionDelayMax(delay);
    socket.io.engine.close();
    return;
  }
  socket.emit(event, data, (answer) => report("ack", { event, answer, data }));
});

setTimeout(() => {
  socket.close();
  process.exit(0);
}, Number(seconds) * 1000);

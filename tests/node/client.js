// A socket.io-client (Node) that reports what happens to it as JSON lines on stdout.
// Usage: node client.js URL PATH TRANSPORTS SECONDS
// TRANSPORTS is websocket, polling or polling,websocket. Each connect is followed by
// a whoami; every event received is printed; the process exits after SECONDS.
// WSK_TEST_TOKEN, when set, is sent as the connect's auth: {token}.
const readline = require("node:readline");
const { io } = require("socket.io-client");

const [url, path, transports, seconds] = process.argv.slice(2);
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
  socket.emit("whoami", (answer) => report("whoami", answer));
});
socket.on("disconnect", (reason) => report("disconnect", reason));
socket.on("connect_error", (error) => report("connect_error", error.message));
socket.onAny((event, ...args) => report("event", { event, args }));

// one JSON command per line: {"event": ..., "data": ...}
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const { event, data } = JSON.parse(line);
  socket.emit(event, data, (answer) => report("ack", { event, answer }));
});

setTimeout(() => {
  socket.close();
  process.exit(0);
}, Number(seconds) * 1000);

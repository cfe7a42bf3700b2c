// One client of the compatibility matrix: any socket.io-client version, over any transport.
// Usage: node matrix.js MODULE URL PATH TRANSPORTS CREDENTIALS ROOM SECONDS
// MODULE is socket.io-client (4.8), socket.io-client-40, -3 or -2; CREDENTIALS yes or no
// (withCredentials: keep cookies, such as HAProxy's sticky one). Reports JSON lines: each
// connect, the answers to whoami and join, every okok and message, errors.
const [moduleName, url, path, transports, credentials, room, seconds] = process.argv.slice(2);
const lib = require(moduleName);
const io = lib.io || lib; // socket.io-client 2 exports the function itself
const report = (what, data) => console.log(JSON.stringify({ what, data, t: Date.now() }));

const options = { path, transports: transports.split(","), reconnection: false };
if (credentials === "yes") {
  options.withCredentials = true;
}
const socket = io(url, options);

socket.on("connect", () => {
  report("connect", { id: socket.id });
  socket.emit("whoami", (answer) => report("whoami", answer));
  socket.emit("join", { room }, (answer) => report("join", answer));
});
socket.on("okok", (beat) => report("okok", beat));
socket.on("message", (message) => report("message", message));
socket.on("disconnect", (reason) => report("disconnect", reason));
socket.on("connect_error", (error) => report("connect_error", String(error && error.message)));
socket.on("error", (error) => report("error", String(error)));

setTimeout(() => {
  report("transport", socket.io.engine.transport.name);
  socket.off("disconnect"); // closing it ourselves is no lost session
  socket.close();
  process.exit(0);
}, Number(seconds) * 1000);

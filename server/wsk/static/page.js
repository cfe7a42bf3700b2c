// wsk's live page: the cluster's nodes from their okok heartbeats, this browser's own
// connection, a room to talk in, and a chart of the last minutes. Plain DOM and canvas;
// socket.io-client's browser bundle (window.io) is loaded before it, from the same node.
(function () {
  "use strict";

  // seconds between two heartbeats at most (--heartbeat-interval + --heartbeat-jitter)
  const heartbeat = Number(document.documentElement.dataset.heartbeat) || 40;
  const lateAfter = Math.max(2 * heartbeat, 2) * 1000;
  const goneAfter = Math.max(4 * heartbeat, 4) * 1000;
  const chartSeconds = 300;

  // The Socket.IO path is the page's own path, whatever prefix a proxy serves it at.
  const path = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const wanted = new URLSearchParams(location.search).get("transport");
  const transports = wanted === "polling" || wanted === "websocket" ? [wanted] : ["polling", "websocket"];

  const $ = (id) => document.getElementById(id);
  const nodes = new Map(); // name -> {host, seen (ms, this clock)}
  const seconds = new Map(); // whole second -> {count, latencies[]}
  let me = null;
  let room = null;
  let connects = 0;
  let recoveries = 0;

  function item(list, parts, limit) {
    const li = document.createElement("li");
    for (const [text, cls] of parts) {
      const span = document.createElement("span");
      span.textContent = text;
      if (cls) span.className = cls;
      li.append(span, " ");
    }
    list.prepend(li);
    while (list.children.length > limit) list.lastChild.remove();
    return li;
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour12: false });
  }

  function log(text) {
    item($("log"), [[clock(), "meta"], [text]], 200);
  }

  function setStatus(state, text) {
    $("status").dataset.state = state;
    $("status").textContent = text;
  }

  const socket = io({ path, transports, reconnectionDelay: 500, reconnectionDelayMax: 3000 });

  // The engine is a new one after each reconnect: follow its transport and upgrades.
  socket.io.on("open", () => {
    const engine = socket.io.engine;
    $("me-transport").textContent = engine.transport.name;
    engine.on("upgrade", (transport) => {
      $("me-transport").textContent = transport.name;
      log(`upgraded to ${transport.name}`);
    });
  });
  socket.io.on("reconnect_attempt", (attempt) => setStatus("connecting", `reconnecting (attempt ${attempt})`));

  socket.on("connect", () => {
    connects += 1;
    setStatus("connected", "connected");
    if (connects > 1) $("reconnects").textContent = String(connects - 1);
    if (socket.recovered) {
      recoveries += 1;
      $("recoveries").textContent = String(recoveries);
    }
    socket.emit("whoami", (answer) => {
      me = answer;
      $("me-node").textContent = answer.node;
      $("me-sid").textContent = answer.sid;
      const how = connects === 1 ? "connected" : socket.recovered ? "reconnected, session recovered" : "reconnected";
      log(`${how} to ${answer.node} over ${socket.io.engine.transport.name}`);
      render();
    });
    // a recovered session kept its rooms; a new one must join again
    if (room && !socket.recovered) join(room);
  });

  socket.on("disconnect", (reason) => {
    setStatus("disconnected", `disconnected: ${reason}`);
    $("me-transport").textContent = "-";
    log(`disconnected from ${me ? me.node : "?"}: ${reason}`);
  });

  socket.on("connect_error", (error) => log(`connect error: ${error.message}`));

  socket.on("okok", (beat) => {
    if (!beat || typeof beat.node !== "string") return;
    nodes.set(beat.node, { host: String(beat.host), seen: Date.now() });
    render();
  });

  socket.on("message", (message) => {
    const data = message && message.data;
    const text = data && typeof data === "object" ? String(data.text) : String(data);
    const sent = data && typeof data.sent === "number" ? data.sent : null;
    const latency = sent === null ? null : Math.max(0, Date.now() - sent);
    const li = item(
      $("messages"),
      [
        [clock(), "meta"],
        [`published on ${message.node}`, "meta"],
        [message.room ? `#${message.room}` : "(all)", "meta"],
        [text],
        [latency === null ? "" : `${latency} ms`, "latency-ms"],
      ],
      200,
    );
    li.dataset.node = String(message.node);
    li.dataset.text = text;
    const second = Math.floor(Date.now() / 1000);
    const bucket = seconds.get(second) || { count: 0, latencies: [] };
    bucket.count += 1;
    if (latency !== null) bucket.latencies.push(latency);
    seconds.set(second, bucket);
  });

  function join(name) {
    socket.emit("join", { room: name }, (answer) => {
      if (answer && answer.error) {
        log(`join ${name}: ${answer.error}`);
        return;
      }
      room = name;
      $("joined").textContent = `in #${name}`;
      $("joined").dataset.room = name;
      log(`joined #${name} on ${answer.node}`);
    });
  }

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("room").value.trim();
    if (!name) return;
    if (room && room !== name) socket.emit("leave", { room });
    join(name);
  });

  $("publish-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value;
    if (!text || !room) {
      if (!room) log("join a room first");
      return;
    }
    socket.emit("publish", { room, data: { text, sent: Date.now() } }, (answer) => {
      if (answer && answer.error) log(`publish: ${answer.error}`);
    });
    $("text").value = "";
  });

  function age(ms) {
    const s = ms / 1000;
    return s < 60 ? `${s.toFixed(1)} s ago` : `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s ago`;
  }

  function render() {
    const body = $("nodes").tBodies[0];
    const now = Date.now();
    const names = [...nodes.keys()].sort();
    for (const name of names) {
      const node = nodes.get(name);
      let row = body.querySelector(`tr[data-node="${CSS.escape(name)}"]`);
      if (!row) {
        row = body.insertRow();
        row.dataset.node = name;
        for (const cls of ["name", "host", "age", "state"]) row.insertCell().className = cls;
      }
      const late = now - node.seen;
      const state = late > goneAfter ? "gone" : late > lateAfter ? "late" : "up";
      row.dataset.state = state;
      row.classList.toggle("mine", Boolean(me && me.node === name));
      row.cells[0].textContent = name;
      row.cells[1].textContent = node.host;
      row.cells[2].textContent = age(late);
      row.cells[3].textContent = state;
    }
    [...body.rows].sort((a, b) => a.dataset.node.localeCompare(b.dataset.node)).forEach((r) => body.append(r));
  }

  function median(values) {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
  }

  function draw() {
    const canvas = $("chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== width * ratio) {
      canvas.width = width * ratio;
      canvas.height = height * ratio;
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const now = Math.floor(Date.now() / 1000);
    for (const second of seconds.keys()) if (second <= now - chartSeconds) seconds.delete(second);
    const counts = [];
    const latencies = [];
    for (let s = now - chartSeconds + 1; s <= now; s += 1) {
      const bucket = seconds.get(s);
      counts.push(bucket ? bucket.count : 0);
      latencies.push(bucket ? median(bucket.latencies) : null);
    }
    const top = 14;
    const plot = height - top - 16;
    const step = width / chartSeconds;
    const maxCount = Math.max(1, ...counts);
    const maxLatency = Math.max(1, ...latencies.filter((v) => v !== null));
    g.strokeStyle = "#dde1ea";
    g.beginPath();
    g.moveTo(0, top + plot + 0.5);
    g.lineTo(width, top + plot + 0.5);
    g.stroke();
    g.fillStyle = "#9db4ea";
    counts.forEach((count, i) => {
      const h = (count / maxCount) * plot;
      if (h > 0) g.fillRect(i * step, top + plot - h, Math.max(1, step - 0.5), h);
    });
    g.strokeStyle = "#d0562f";
    g.lineWidth = 2;
    g.beginPath();
    let drawing = false;
    latencies.forEach((value, i) => {
      if (value === null) {
        drawing = false;
        return;
      }
      const x = i * step + step / 2;
      const y = top + plot - (value / maxLatency) * plot;
      if (drawing) g.lineTo(x, y);
      else g.moveTo(x, y);
      drawing = true;
    });
    g.stroke();
    g.lineWidth = 1;
    g.fillStyle = "#6b7385";
    g.font = "11px system-ui, sans-serif";
    g.fillText(`${maxCount}/s`, 2, 11);
    const label = `${maxLatency} ms`;
    g.fillText(label, width - g.measureText(label).width - 2, 11);
    g.fillText(`-${chartSeconds / 60} min`, 2, height - 3);
    g.fillText("now", width - 22, height - 3);
  }

  setInterval(render, 500);
  setInterval(draw, 1000);
  draw();
})();

// Drives the real socket.io-client for Palaver's Rust tests, one JSON command per stdin line:
//   {"cmd":"connect","id":"a","url":"http://127.0.0.1:PORT/ai","token":"...","transports":["websocket"]}
//   {"cmd":"emit","id":"a","event":"chat:start","data":{...},"ack":true,"seq":7}
//   {"cmd":"disconnect","id":"a"}
// and one JSON line per thing that happened on stdout:
//   {"id":"a","kind":"connect"} | {"id":"a","kind":"connect_error","message":"..."}
//   {"id":"a","kind":"event","event":"chat:message","data":{...}}
//   {"id":"a","kind":"ack","seq":7,"data":{...}} | {"id":"a","kind":"disconnect","reason":"..."}
"use strict";

const { io } = require("socket.io-client");
const readline = require("readline");

const sockets = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function connect({ id, url, token, transports }) {
  const options = { reconnection: false, forceNew: true, timeout: 10000 };
  if (token !== undefined && token !== null) options.auth = { token };
  if (transports) options.transports = transports;
  const socket = io(url, options);
  sockets.set(id, socket);
  socket.on("connect", () => out({ id, kind: "connect" }));
  socket.on("connect_error", (err) => out({ id, kind: "connect_error", message: String(err && err.message), data: (err && err.data) || null }));
  socket.on("disconnect", (reason) => out({ id, kind: "disconnect", reason }));
  socket.onAny((event, data) => out({ id, kind: "event", event, data: data === undefined ? null : data }));
}

function emit({ id, event, data, ack, seq }) {
  const socket = sockets.get(id);
  if (!socket) return out({ id, kind: "driver_error", message: `no socket ${id}` });
  if (ack) {
    socket.timeout(30000).emit(event, data, (err, reply) => {
      if (err) out({ id, kind: "ack_timeout", seq });
      else out({ id, kind: "ack", seq, data: reply === undefined ? null : reply });
    });
  } else if (data === undefined) {
    socket.emit(event);
  } else {
    socket.emit(event, data);
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return out({ kind: "driver_error", message: `bad command: ${e.message}` });
  }
  switch (cmd.cmd) {
    case "connect":
      return connect(cmd);
    case "emit":
      return emit(cmd);
    case "disconnect": {
      const socket = sockets.get(cmd.id);
      if (socket) socket.disconnect();
      return;
    }
    default:
      return out({ kind: "driver_error", message: `unknown command ${cmd.cmd}` });
  }
});
rl.on("close", () => {
  for (const socket of sockets.values()) socket.disconnect();
  process.exit(0);
});
out({ kind: "ready" });

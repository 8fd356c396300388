// Baseline for the connection benchmarks: Node.js socket.io 4.8 with
// @socket.io/redis-adapter 8.3, doing what reeltrack's connect does in the cheapest
// form Node offers: the token's user joins room "user:<id>", gets a "snapshot" event,
// and the adapter subscribes on Redis.  Installed by the benchmark into a temporary
// directory (never a dependency of reeltrack).
//
//   node server.js --port P --redis-url redis://... --ping-interval S
// GET /count answers the number of connected sockets (the benchmark polls it).
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const port = Number(arg("--port", "3000"));
const redisUrl = arg("--redis-url", "redis://127.0.0.1:6379");
const pingInterval = Number(arg("--ping-interval", "25")) * 1000;

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer((req, res) => {
    if (req.url === "/count") {
      res.end(String(io.engine.clientsCount));
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  const io = new Server(server, {
    path: "/api/ws/progress/",
    transports: ["websocket"],
    pingInterval,
    pingTimeout: Math.max(20000, pingInterval),
    perMessageDeflate: false,
    adapter: createAdapter(pub, sub),
  });
  io.on("connection", (socket) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (typeof token !== "string") {
      socket.disconnect(true);
      return;
    }
    socket.join("user:" + token);
    socket.emit("snapshot", { jobs: [] });
  });
  server.listen(port, "127.0.0.1");
  const stop = () => {
    io.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});

// What @socket.io/redis-emitter publishes, for the fan-out benchmark to compare with the
// bytes its own (Python) emitter writes for the Node target.  No Redis: the emitter is
// given a client whose publish() records the channel and the message.
//
//   echo '[{"room": "user:1", "event": "progress", "data": {...}}]' | node wire_check.js
// prints [[channel, message as hex], ...], one per sample, in order.
"use strict";
const { Emitter } = require("@socket.io/redis-emitter");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  const published = [];
  const recorder = {
    publish: (channel, message) => {
      published.push([channel, Buffer.from(message).toString("hex")]);
    },
  };
  const emitter = new Emitter(recorder);
  for (const sample of JSON.parse(input)) {
    emitter.to(sample.room).emit(sample.event, sample.data);
  }
  process.stdout.write(JSON.stringify(published) + "\n");
});

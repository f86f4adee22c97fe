/**
 * Times a proxy's own two stretches of a streamed request, from inside the process (preload it; streams one at
 * a time): from the client's request (the HTTP server's 'request' event) to the first write on the upstream's
 * socket, and from the first upstream read holding an SSE `data:` line to the first write of one to a client
 * (and to those bytes handed to the client's socket: Node corks a response's socket until the next tick).
 * The same preload runs in Colloquy and in bench/node-proxy.ts, so the two compare like for like.
 *   STREAM_PROBE_UPSTREAM_PORT=<port> STREAM_PROBE_OUT=/tmp/x.json node --import ./bench/stream-probe.mjs …
 *   kill -USR2 <pid>   # writes {toUpstream, toClient, toClientSent} (µs, one per stream) to STREAM_PROBE_OUT and resets
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const upstreamPort = Number(process.env.STREAM_PROBE_UPSTREAM_PORT);
const out = process.env.STREAM_PROBE_OUT ?? '/tmp/stream-probe.json';
const now = () => Number(process.hrtime.bigint()) / 1e3;
const isUpstream = (socket) => socket.remotePort === upstreamPort;
const hasData = (chunk) =>
  chunk != null &&
  (typeof chunk === 'string' ? chunk.includes('data: ') : Buffer.from(chunk).includes('data: '));

let phase = 0; // 1: request seen, 2: upstream called, 3: first chunk read, 0: first chunk written
let at = 0;
let toUpstream = [];
let toClient = [];
// The first event's bytes handed to the client's socket (its _write/_writev), which a corked socket (Node
// corks a response's socket on each write until the next tick) does after the write call.
let toClientSent = [];
let sendingFrom = -1;
let marks = {};
let seen = new Set();
// Temporary instrumentation: `globalThis.__mark?.('name')` in the build records the first time per stretch.
globalThis.__mark = (name) => {
  if (phase === 0 || seen.has(name)) return;
  seen.add(name);
  const key = `${phase}:${name}`;
  marks[key] ??= [];
  marks[key].push(now() - at);
};

const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, request, ...rest) {
  if (event === 'request' && request.method === 'POST') {
    phase = 1;
    seen = new Set();
    at = now();
  }
  return emit.call(this, event, request, ...rest);
};

const write = net.Socket.prototype.write;
net.Socket.prototype.write = function (chunk, ...rest) {
  if (phase === 1 && isUpstream(this)) {
    toUpstream.push(now() - at);
    phase = 2;
  } else if (phase === 3 && !isUpstream(this) && hasData(chunk)) {
    toClient.push(now() - at);
    phase = 0;
    sendingFrom = at;
  }
  return write.call(this, chunk, ...rest);
};

for (const name of ['_write', '_writev']) {
  const original = net.Socket.prototype[name];
  net.Socket.prototype[name] = function (...args) {
    if (sendingFrom >= 0 && !isUpstream(this)) {
      toClientSent.push(now() - sendingFrom);
      sendingFrom = -1;
    }
    return original.apply(this, args);
  };
}

const read = net.Socket.prototype.read;
net.Socket.prototype.read = function (...args) {
  const chunk = read.apply(this, args);
  if (phase === 2 && chunk && isUpstream(this) && hasData(chunk)) {
    phase = 3;
    seen = new Set();
    at = now();
  }
  return chunk;
};

process.on('SIGUSR2', () => {
  writeFileSync(out, JSON.stringify({ toUpstream, toClient, toClientSent, marks }));
  marks = {};
  toUpstream = [];
  toClient = [];
  toClientSent = [];
});

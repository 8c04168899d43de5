// ws_load: WebSocket load for bench/websocket.py (node and the npm package ws).
//
// usage: node ws_load.js echo URL CONNS WINDOW SECONDS [WARMUP_S=1] [PAYLOAD_BYTES=16]
//        node ws_load.js chat URL CLIENTS WINDOW SECONDS [WARMUP_S=1]
//
// echo: CONNS connections each keep WINDOW text messages in flight; every reply
//   must be the message sent (checked by its sequence number).
// chat: CLIENTS connections join one room (first message the room, second the
//   name, as the seed's chat protocol says); once all have joined, one of them
//   (named "p") keeps WINDOW lines in flight, sending one more for each of its own
//   lines that comes back; every line any client receives counts as a delivery.
//
// No compression is offered. Prints "window-start" when the warm-up ends (the
// bench samples CPU times then), and at the end:
// msgs_per_s= msgs= secs= p50_us= p99_us= mismatches= errors=
// (for chat, msgs are deliveries and the latencies are the publisher's).
'use strict';
const WebSocket = require('ws');

const [mode, url, C, W, S, WU, PB] = process.argv.slice(2);
if (!url || (mode !== 'echo' && mode !== 'chat')) {
  console.error('usage: node ws_load.js echo|chat URL CONNS WINDOW SECONDS [WARMUP_S] [PAYLOAD_BYTES]');
  process.exit(2);
}
const conns = +C || 50, win = +W || 10, secs = +S || 10;
const warm = WU === undefined ? 1 : +WU;
const pad = 'x'.repeat(Math.max(0, (+PB || 16) - 10));
const now = () => Number(process.hrtime.bigint() / 1000n);

let counted = 0, mism = 0, errs = 0, open = 0, done = false, warmEnd = Infinity, tEnd = Infinity;
const lat = [];

function finish() {
  if (done) return;
  done = true;
  const el = Math.max(1e-9, (now() - warmEnd) / 1e6);
  lat.sort((a, b) => a - b);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] : -1);
  console.log(`msgs_per_s=${Math.round(counted / el)} msgs=${counted} secs=${el.toFixed(2)} ` +
              `p50_us=${q(0.5)} p99_us=${q(0.99)} mismatches=${mism} errors=${errs}`);
  process.exit(counted > 0 && errs === 0 ? 0 : 1);
}

function startWindow() {
  const t = now();
  warmEnd = t + warm * 1e6;
  tEnd = warmEnd + secs * 1e6;
  setTimeout(() => { console.log('window-start'); }, warm * 1000);
  setTimeout(finish, (warm + secs) * 1000);
}

function record(sentAt) {
  const t = now();
  if (t >= warmEnd && t < tEnd && lat.length < 5e6) lat.push(t - sentAt);
}

const socks = [];
const echoes = [];
function connect(onOpen, onMessage) {
  const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
  ws.on('open', onOpen);
  ws.on('message', onMessage);
  ws.on('error', (e) => { errs++; if (!done) console.error('ws error', e.message); });
  ws.on('close', () => { if (!done) { errs++; console.error('closed by the server'); finish(); } });
  socks.push(ws);
  return ws;
}

if (mode === 'echo') {
  for (let i = 0; i < conns; i++) {
    const c = { seq: i * 1e9, inflight: [] };
    const send = () => {
      const id = c.seq++;
      c.inflight.push([id, now()]);
      c.ws.send(`${id}|${pad}`);
    };
    c.ws = connect(() => {
      if (++open === conns) {
        startWindow();
        for (const s of echoes) for (let k = 0; k < win; k++) s.send();
      }
    }, (data) => {
      const [id, t] = c.inflight.shift() || [];
      const s = data.toString();
      if (id === undefined || +s.slice(0, s.indexOf('|')) !== id) mism++;
      if (now() >= warmEnd) { counted++; record(t); }
      if (!done) send();
    });
    c.send = send;
    echoes.push(c);
  }
} else {
  const room = 'bench room';
  const sent = [];  // the publisher's lines in flight: send times
  let publisher = null;
  const deliver = () => { if (now() >= warmEnd) counted++; };
  const publish = () => {
    sent.push(now());
    publisher.send(`${sent.length}|${pad}`);
  };
  // Listeners first; the publisher joins once they all have, and starts once it
  // has joined (its own first line coming back proves the room is complete).
  for (let i = 0; i < conns - 1; i++) {
    const ws = connect(() => {
      ws.send(room);
      ws.send(`l${i}`);
      if (++open === conns - 1) joinPublisher();
    }, deliver);
  }
  function joinPublisher() {
    publisher = connect(() => {
      publisher.send(room);
      publisher.send('p');
      setTimeout(() => {
        startWindow();
        for (let k = 0; k < win; k++) publish();
      }, 200);
    }, (data) => {
      deliver();
      if (data[0] !== 0x70 /* p */) return;
      const t = sent.shift();
      if (t === undefined) { mism++; return; }
      record(t);
      if (!done) publish();
    });
  }
}
setTimeout(() => { if (warmEnd === Infinity) { console.error('connect timeout'); errs++; finish(); } }, 30000);

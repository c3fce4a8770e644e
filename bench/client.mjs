// client.mjs -- the loads wrk cannot make.  Prints one line of results.
//   idle  PORT N           open N keep-alive connections, one GET /fixed each,
//                          print "ready N", then hold them idle until SIGTERM
//   ws    PORT C SECONDS   C WebSockets to /ws, each echoing 64-byte messages
//                          one at a time: "msgs/s p50_ms p99_ms"
//   sse   PORT N SECONDS   N streams of /sse: "events/s p50_ms p99_ms" of the
//                          delay from the origin's write to this read
// Usage: node client.mjs MODE ... [WS_MODULE_DIR]
import net from 'node:net';
import { createRequire } from 'node:module';

const [mode, portS, nS, secS, wsDir] = process.argv.slice(2);
const port = Number(portS), n = Number(nS), secs = Number(secS);
const now = () => performance.timeOrigin + performance.now();
const pct = (a, p) => {
  if (!a.length) return NaN;
  a.sort((x, y) => x - y);
  return a[Math.min(a.length - 1, Math.floor(a.length * p))];
};

// Open n sockets, at most `burst` connecting at once.
async function openMany(count, burst, onSock) {
  const socks = [];
  let next = 0;
  async function one() {
    while (next < count) {
      next++;
      socks.push(await new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        s.setNoDelay(true);
        s.once('error', reject);
        onSock(s, resolve);
      }));
    }
  }
  await Promise.all(Array.from({ length: burst }, one));
  return socks;
}

if (mode === 'idle') {
  const socks = await openMany(n, 100, (s, done) => {
    s.write('GET /fixed HTTP/1.1\r\nHost: bench\r\n\r\n');
    let got = 0;
    s.on('data', (d) => { got += d.length; if (got >= 1024) done(s); });
  });
  for (const s of socks) s.on('close', () => { console.error('idle: a connection was closed'); });
  console.log(`ready ${socks.length}`);
  process.on('SIGTERM', () => process.exit(0));
  setInterval(() => {}, 1 << 30);
} else if (mode === 'sse') {
  const lags = [];
  let recording = false, events = 0, t0 = 0;
  await openMany(n, 100, (s, done) => {
    s.write('GET /sse HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n');
    let tail = '', started = false;
    s.setEncoding('latin1');
    s.on('data', (d) => {
      const t = now();
      if (!started) { started = true; done(s); }
      const text = tail + d;
      const re = /data: ([0-9.]+)\n/g;
      let m, last = 0;
      while ((m = re.exec(text))) {
        last = re.lastIndex;
        if (recording) { lags.push(t - Number(m[1])); events++; }
      }
      tail = text.slice(Math.max(last, text.length - 64));
    });
  });
  await new Promise((r) => setTimeout(r, 500));
  recording = true; t0 = now();
  await new Promise((r) => setTimeout(r, secs * 1000));
  recording = false;
  const el = (now() - t0) / 1000;
  console.log(`${(events / el).toFixed(0)} ${pct(lags, 0.5).toFixed(3)} ${pct(lags, 0.99).toFixed(3)}`);
  process.exit(0);
} else if (mode === 'ws') {
  const { WebSocket } = createRequire(wsDir + '/')('ws');
  const msg = Buffer.alloc(64, 97);
  const lats = [];
  let count = 0, running = true;
  const socks = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  })));
  const t0 = now();
  for (const ws of socks) {
    let sent = now();
    ws.on('message', () => {
      const t = now();
      lats.push(t - sent); count++;
      if (running) { sent = t; ws.send(msg); }
    });
    ws.send(msg);
  }
  await new Promise((r) => setTimeout(r, secs * 1000));
  running = false;
  const el = (now() - t0) / 1000;
  console.log(`${(count / el).toFixed(0)} ${pct(lats, 0.5).toFixed(3)} ${pct(lats, 0.99).toFixed(3)}`);
  for (const ws of socks) ws.terminate();
  process.exit(0);
} else {
  console.error('usage: client.mjs idle|ws|sse PORT N [SECONDS] [WS_MODULE_DIR]');
  process.exit(2);
}

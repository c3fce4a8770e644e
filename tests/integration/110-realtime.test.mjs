// 110-realtime: WebSocket tunnels (through the `ws` package) and
// Server-Sent Events against real Node.js upstreams: echo of text and
// binary frames up to 16 MB, ping/pong, close from either side, the idle
// timeout, events delivered one by one without buffering, client abort
// reaching the upstream, both kinds of stream surviving 10 reloads, and
// 8 MB sent up a tunnel to an upstream that does not read for a while,
// and one that never reads again, cut by its send timeout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { startPortico, waitFor } from './lib/harness.mjs';

/** A Node.js upstream with a WebSocket echo on /ws and SSE on /events. */
async function realtimeUpstream() {
  const u = { sseOpen: 0, sseClosed: 0, wsClosed: 0, sent: [] };
  u.server = http.createServer((req, res) => {
    if (req.url.startsWith('/events')) {
      u.sseOpen++;
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      res.write(': hello\n\n');
      let n = 0;
      const every = Number(new URL(req.url, 'http://x').searchParams.get('every') || 100);
      const timer = setInterval(() => {
        n++;
        u.sent.push({ n, at: Date.now() });
        res.write(`id: ${n}\ndata: ${JSON.stringify({ n, at: Date.now() })}\n\n`);
      }, every);
      req.on('close', () => { clearInterval(timer); u.sseClosed++; });
      return;
    }
    res.writeHead(200, { 'Content-Length': 2 });
    res.end('ok');
  });
  u.wss = new WebSocketServer({ server: u.server, path: '/ws', maxPayload: 64 * 1024 * 1024 });
  u.wss.on('connection', (ws, req) => {
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'close-please') { ws.close(4001, 'server says bye'); return; }
      ws.send(data, { binary: isBinary });
    });
    ws.on('close', () => { u.wsClosed++; });
  });
  await new Promise((r) => u.server.listen(0, '127.0.0.1', r));
  u.address = `127.0.0.1:${u.server.address().port}`;
  u.close = () => new Promise((r) => {
    for (const c of u.wss.clients) c.terminate();
    u.wss.close();
    u.server.closeAllConnections();
    u.server.close(() => r());
  });
  return u;
}

function config(u, extra = {}) {
  return {
    workers: 2,
    error_log: { level: 'info' },
    access_log: { format: 'off' },
    listeners: [{ listen: '127.0.0.1:0' }],
    upstreams: { app: { servers: [{ address: u.address }], timeouts: { read: '2s' } } },
    routes: [{ upstream: 'app' }],
    ...extra,
  };
}

function openWs(port, path = '/ws') {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { maxPayload: 64 * 1024 * 1024 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

const nextMessage = (ws) => new Promise((resolve, reject) => {
  ws.once('message', (data, isBinary) => resolve({ data, isBinary }));
  ws.once('error', reject);
});

/** Open an SSE stream; events are collected with their arrival time. */
function openSse(port, path = '/events') {
  return new Promise((resolve, reject) => {
    const s = { events: [], req: null, res: null, ended: false };
    s.req = http.get({ port, path, agent: false, headers: { Accept: 'text/event-stream' } }, (res) => {
      s.res = res;
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        buf += c;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (data) s.events.push({ ...JSON.parse(data.slice(6)), got: Date.now() });
        }
      });
      res.on('end', () => { s.ended = true; });
      resolve(s);
    });
    s.req.on('error', reject);
  });
}

describe('WebSocket', () => {
  let u, d;
  before(async () => {
    u = await realtimeUpstream();
    d = await startPortico({ config: config(u) });
  });
  after(async () => { await d?.stop(); await u?.close(); });

  test('text and binary echo, up to 16 MB', async () => {
    const ws = await openWs(d.port);
    try {
      ws.send('hello');
      let m = await nextMessage(ws);
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString(), 'hello');
      for (const size of [1, 125, 126, 65535, 65536, 1024 * 1024, 16 * 1024 * 1024]) {
        const buf = Buffer.alloc(size);
        for (let i = 0; i < size; i += 4096) buf[i] = (i / 4096) & 255;
        buf[size - 1] = 7;
        ws.send(buf, { binary: true });
        m = await nextMessage(ws);
        assert.equal(m.isBinary, true);
        assert.equal(m.data.length, size);
        assert.ok(m.data.equals(buf), `binary frame of ${size} bytes came back changed`);
      }
    } finally { ws.close(); }
  });

  test('ping is answered with pong', async () => {
    const ws = await openWs(d.port);
    try {
      const pong = new Promise((r) => ws.once('pong', (data) => r(data.toString())));
      ws.ping('are-you-there');
      assert.equal(await pong, 'are-you-there');
    } finally { ws.close(); }
  });

  test('close from the client reaches the upstream', async () => {
    const before = u.wsClosed;
    const ws = await openWs(d.port);
    ws.send('x'); await nextMessage(ws);
    const closed = new Promise((r) => ws.once('close', (code) => r(code)));
    ws.close(1000, 'done');
    assert.equal(await closed, 1000);
    await waitFor(() => u.wsClosed > before, { what: 'upstream sees the close' });
  });

  test('close from the upstream reaches the client', async () => {
    const ws = await openWs(d.port);
    const closed = new Promise((r) => ws.once('close', (code, reason) => r([code, reason.toString()])));
    ws.send('close-please');
    assert.deepEqual(await closed, [4001, 'server says bye']);
  });

  test('an upstream that dies closes the client side', async () => {
    const u2 = await realtimeUpstream();
    const d2 = await startPortico({ config: config(u2, { workers: 1 }) });
    try {
      const ws = await openWs(d2.port);
      const closed = new Promise((r) => ws.once('close', (code) => r(code)));
      for (const c of u2.wss.clients) c.terminate();
      const code = await closed;
      assert.ok(code === 1006 || code === 1005, `close code ${code}`);
    } finally { await d2.stop(); await u2.close(); }
  });

  test('websocket_idle closes a silent tunnel', async () => {
    const d2 = await startPortico({ config: config(u, { workers: 1,
      timeouts: { websocket_idle: '500ms' } }) });
    try {
      const ws = await openWs(d2.port);
      const t0 = Date.now();
      const closed = new Promise((r) => ws.once('close', (code) => r(code)));
      await closed;
      assert.ok(Date.now() - t0 >= 400, 'closed before the idle timeout');
      await d2.waitForLog(/tunnel idle for \d+ ms/);
    } finally { await d2.stop(); }
  });
});

describe('Server-Sent Events', () => {
  let u, d;
  before(async () => {
    u = await realtimeUpstream();
    d = await startPortico({ config: config(u) });
  });
  after(async () => { await d?.stop(); await u?.close(); });

  test('events arrive one by one, as the upstream sends them', async () => {
    const s = await openSse(d.port, '/events?every=150');
    try {
      assert.equal(s.res.headers['content-type'], 'text/event-stream');
      await waitFor(() => s.events.length >= 8, { what: '8 events' });
      const lags = s.events.map((e) => e.got - e.at);
      console.log(`# SSE delivery lag per event (ms): ${lags.join(' ')}`);
      for (const lag of lags) assert.ok(lag < 200, `an event took ${lag} ms`);
      // one by one: no two events landed together
      for (let i = 1; i < s.events.length; i++)
        assert.ok(s.events[i].got - s.events[i - 1].got > 50, 'events arrived in a batch');
    } finally { s.req.destroy(); }
  });

  test('a stream outlives upstream_read (the read timeout is sse_idle)', async () => {
    // timeouts.read is 2 s; events every 2.5 s would trip it for a normal
    // response, not for an event stream.
    const s = await openSse(d.port, '/events?every=2500');
    try {
      await waitFor(() => s.events.length >= 2, { timeout: 15000, what: '2 slow events' });
      assert.equal(s.ended, false);
    } finally { s.req.destroy(); }
  });

  test('a client that disconnects closes the upstream request', async () => {
    const before = u.sseClosed;
    const s = await openSse(d.port);
    await waitFor(() => s.events.length >= 1, { what: 'first event' });
    s.req.destroy();
    await waitFor(() => u.sseClosed > before, { timeout: 3000, what: 'upstream sees the disconnect' });
  });
});

test('a WebSocket and an SSE stream keep working across 10 reloads', async () => {
  const u = await realtimeUpstream();
  const d = await startPortico({ config: config(u) });
  try {
    const ws = await openWs(d.port);
    const s = await openSse(d.port, '/events?every=50');
    for (let i = 0; i < 10; i++) {
      const r = await d.reload(config(u, { access_log: { format: i % 2 ? 'off' : 'combined', path: 'stderr' } }));
      assert.ok(r.ok, r.lines.join('\n'));
      ws.send(`after reload ${i}`);
      assert.equal((await nextMessage(ws)).data.toString(), `after reload ${i}`);
      const seen = s.events.length;
      await waitFor(() => s.events.length > seen, { what: `an event after reload ${i}` });
    }
    assert.equal(s.ended, false);
    assert.equal(ws.readyState, WebSocket.OPEN);
    ws.close();
    s.req.destroy();
  } finally { await d.stop(); await u.close(); }
});

test('8 MB sent up a tunnel while the upstream does not read arrive whole and in order', async () => {
  // portico writes a plain upstream's tunnel bytes itself and waits for
  // the socket (EV_WRITE) only when it is full: here it fills, stays full
  // for 800 ms, then drains.  The upstream answers the upgrade by hand,
  // counts and hashes what comes, and sends the digest back down.
  const SIZE = 8 * 1024 * 1024;
  const body = crypto.randomBytes(SIZE);
  const want = crypto.createHash('sha256').update(body).digest('hex');
  const up = net.createServer((sock) => {
    let head = Buffer.alloc(0);
    const onHead = (c) => {
      head = Buffer.concat([head, c]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onHead);
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      sock.pause();
      const h = crypto.createHash('sha256');
      let len = 0;
      const take = (d) => {
        h.update(d); len += d.length;
        if (len === SIZE) sock.write(`${len} ${h.digest('hex')}\n`);
      };
      if (head.length > end + 4) take(head.subarray(end + 4));
      sock.on('data', take);
      setTimeout(() => sock.resume(), 800);
    };
    sock.on('data', onHead);
    sock.on('error', () => {});
  });
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const d = await startPortico({ config: config({ address: `127.0.0.1:${up.address().port}` }) });
  try {
    const got = await new Promise((resolve, reject) => {
      const c = net.connect(d.port, '127.0.0.1');
      let buf = '', upgraded = false, off = 0;
      const stall = setTimeout(() => {
        c.removeAllListeners('close'); c.destroy();
        reject(new Error(`stalled: ${off} of ${SIZE} bytes written, no digest from the upstream in 20 s`));
      }, 20000);
      c.on('error', reject);
      c.on('close', () => reject(new Error(`closed early: ${JSON.stringify(buf.slice(0, 200))}`)));
      c.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      c.on('data', (chunk) => {
        buf += chunk.toString('latin1');
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          assert.match(buf, /^HTTP\/1\.1 101 /);
          upgraded = true;
          buf = buf.slice(end + 4);
          // uneven pieces, as fast as the socket takes them
          let n = 0;
          const pump = () => {
            while (off < SIZE && !c.destroyed) {
              const len = Math.min(SIZE - off, 1 + ((n++ * 104729) % 300000));
              const ok = c.write(body.subarray(off, off + len));
              off += len;
              if (!ok) return c.once('drain', pump);
            }
          };
          pump();
        }
        if (buf.endsWith('\n')) {
          clearTimeout(stall); c.removeAllListeners('close'); c.destroy(); resolve(buf.trim());
        }
      });
    });
    assert.equal(got, `${SIZE} ${want}`, 'the bytes that reached the upstream differ from those sent');
  } finally { await d.stop(); up.close(); }
});

test('a tunnel whose upstream stops reading is closed by the send timeout', async () => {
  const up = net.createServer((sock) => {
    sock.once('data', () => {
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      sock.pause(); // and never reads again
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const cfg = config({ address: `127.0.0.1:${up.address().port}` });
  cfg.upstreams.app.timeouts = { send: '1s' };
  const d = await startPortico({ config: cfg });
  try {
    const t0 = Date.now();
    const how = await new Promise((resolve, reject) => {
      const c = net.connect(d.port, '127.0.0.1');
      let upgraded = false, head = '';
      const stall = setTimeout(() => { c.destroy(); reject(new Error('the tunnel was still open after 20 s')); }, 20000);
      c.on('error', () => {});
      c.on('close', () => { clearTimeout(stall); resolve(upgraded ? 'closed' : `closed before the upgrade: ${head}`); });
      c.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      c.on('data', (chunk) => {
        if (upgraded) return;
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        upgraded = true;
        const piece = Buffer.alloc(256 * 1024, 97);
        const pump = () => {
          while (!c.destroyed) if (!c.write(piece)) return c.once('drain', pump);
        };
        pump();
      });
    });
    assert.equal(how, 'closed');
    assert.ok(Date.now() - t0 < 15000, `closing took ${Date.now() - t0} ms`);
  } finally { await d.stop(); up.close(); }
});

// 100-proxy: forwarding to real Node.js upstreams.  Methods and bodies
// (Content-Length and chunked), header rewriting both ways, response
// framing (length, chunked, close-delimited, HEAD, 204, 304), pooled
// keep-alive reuse and the stale-connection retry, 502/503/504, balancing
// and retries, and streaming with a bound on the worker's memory.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { agentPerWorker, closeAgents, delay, httpRequest, keepAliveAgent, rawRequest,
  closingRequest, parseResponses, pipelineUnread, RawConn, runPorticod, startPortico, waitFor } from './lib/harness.mjs';

// Sanitizer builds keep freed memory in quarantine: RSS means nothing there.
const SANITIZED = /sanitizers=yes/.test(runPorticod(['-V']).stdout);

/** A Node.js upstream that echoes what it got, and counts connections. */
async function echoServer(name = 'echo', opts = {}) {
  const s = { name, connections: 0, requests: 0, seen: [] };
  s.server = http.createServer((req, res) => {
    s.requests++;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      s.seen.push({ method: req.method, url: req.url, headers: req.headers,
        body: body.toString() });
      if (opts.handler && opts.handler(req, res, body)) return;
      const out = JSON.stringify({ server: name, method: req.method, url: req.url,
        headers: req.headers, bodyLength: body.length, body: body.toString().slice(0, 200) });
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Upstream': name,
        'Content-Length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  if (opts.keepAliveTimeout) s.server.keepAliveTimeout = opts.keepAliveTimeout;
  s.server.on('connection', () => s.connections++);
  await new Promise((r) => s.server.listen(0, '127.0.0.1', r));
  s.port = s.server.address().port;
  s.address = `127.0.0.1:${s.port}`;
  s.close = () => new Promise((r) => { s.server.closeAllConnections?.(); s.server.close(() => r()); });
  return s;
}

/** A raw TCP upstream: fn(socket, data, nth request on this socket). */
async function rawServer(fn) {
  const s = { connections: 0 };
  s.server = net.createServer((sock) => {
    s.connections++;
    let n = 0, buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        const end = buf.indexOf('\r\n\r\n') + 4;
        const head = buf.slice(0, end);
        buf = buf.slice(end);
        fn(sock, head, ++n);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => s.server.listen(0, '127.0.0.1', r));
  s.port = s.server.address().port;
  s.address = `127.0.0.1:${s.port}`;
  s.close = () => new Promise((r) => s.server.close(() => r()));
  return s;
}

function proxyConfig(upstreams, routes, extra = {}) {
  return {
    workers: 1,
    error_log: { level: 'info' },
    access_log: { format: 'off' },
    listeners: [{ listen: '127.0.0.1:0' }],
    upstreams,
    routes,
    ...extra,
  };
}

/** A port nobody listens on. */
async function deadPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('forwarding', () => {
  let up, d;
  before(async () => {
    up = await echoServer('a', {
      handler(req, res, body) {
        if (req.url === '/chunked') {
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          res.write('hello ');
          setTimeout(() => res.end('world'), 20);
          return true;
        }
        if (req.url === '/nocontent') { res.writeHead(204); res.end(); return true; }
        if (req.url === '/notmodified') {
          res.writeHead(304, { ETag: '"x"' }); res.end(); return true;
        }
        if (req.url === '/hop') {
          res.writeHead(200, { Connection: 'X-Secret', 'X-Secret': 'no',
            'Keep-Alive': 'timeout=5', 'X-Drop': 'me', 'Content-Length': 2 });
          res.end('ok');
          return true;
        }
        return false;
      },
    });
    d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: up.address }] },
        named: { servers: [{ address: up.address }], host: 'internal.example' } },
      [
        { match: { path_prefix: '/named' }, upstream: 'named' },
        { match: { path_prefix: '/rw' }, upstream: 'app',
          headers: {
            request: { set: { 'X-Set': 'set' }, add: { 'X-Add': 'added' }, remove: ['X-Remove'] },
            response: { set: { 'X-Resp-Set': 'yes' }, remove: ['X-Upstream'] },
          } },
        { match: { path_prefix: '/' }, upstream: 'app' },
      ]) });
  });
  after(async () => { await d?.stop(); await up?.close(); });

  test('GET passes through with the client Host and a 200', async () => {
    const r = await httpRequest(d.port, { path: '/hello?x=1', headers: { Host: 'shop.example' } });
    assert.equal(r.status, 200);
    const j = JSON.parse(r.body);
    assert.equal(j.url, '/hello?x=1');
    assert.equal(j.headers.host, 'shop.example');
    assert.equal(r.headers['x-upstream'], 'a');
  });

  test('POST and PUT bodies with Content-Length and chunked', async () => {
    const body = 'x'.repeat(100000);
    let r = await httpRequest(d.port, { path: '/p', method: 'POST', body,
      headers: { 'Content-Length': body.length } });
    assert.equal(JSON.parse(r.body).bodyLength, body.length);
    r = await httpRequest(d.port, { path: '/p', method: 'PUT', body: 'abc',
      headers: { 'Content-Length': 3 } });
    assert.equal(JSON.parse(r.body).method, 'PUT');
    assert.equal(JSON.parse(r.body).body, 'abc');
    // chunked upload: node sends chunked when no length is given
    r = await new Promise((resolve, reject) => {
      const req = http.request({ port: d.port, path: '/c', method: 'POST', agent: false }, (res) => {
        let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve(JSON.parse(b)));
      });
      req.on('error', reject);
      req.write('part1-'); setTimeout(() => { req.write('part2'); req.end(); }, 30);
    });
    assert.equal(r.body, 'part1-part2');
    assert.equal(r.headers['transfer-encoding'], 'chunked');
  });

  test('hop-by-hop fields are dropped, forwarding fields added', async () => {
    const raw = 'GET /h HTTP/1.1\r\nHost: front.example\r\nConnection: keep-alive, X-Hop\r\n' +
      'X-Hop: secret\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nProxy-Connection: x\r\n' +
      'Trailer: X-Sum\r\nProxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\n' +
      `X-Big: ${'b'.repeat(5000)}\r\n` + // past the 2 KB the head is built in first
      'X-Forwarded-For: 10.1.2.3\r\nX-Request-Id: abc-123\r\n\r\n';
    const [res] = parseResponses((await rawRequest(d.port, raw, { timeout: 3000 })).data).responses;
    const h = JSON.parse(res.body).headers;
    assert.equal(h['x-hop'], undefined);
    assert.equal(h['keep-alive'], undefined);
    assert.equal(h.te, undefined);
    assert.equal(h['proxy-connection'], undefined);
    assert.equal(h.trailer, undefined);
    assert.equal(h['proxy-authorization'], undefined);
    assert.equal(h.upgrade, undefined);
    assert.equal(h['x-big'], 'b'.repeat(5000));
    assert.equal(h['x-forwarded-for'], '10.1.2.3, 127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'front.example');
    assert.equal(h.via, '1.1 portico');
    assert.equal(h['x-request-id'], 'abc-123');
    // the client's address as written, for any IPv4 address
    for (const ip of ['127.10.200.3', '127.0.99.250', '127.255.0.10']) {
      const r = await httpRequest(d.port, { path: '/h3', localAddress: ip });
      assert.equal(JSON.parse(r.body).headers['x-forwarded-for'], ip);
    }
    const r2 = await httpRequest(d.port, { path: '/h2' });
    assert.match(JSON.parse(r2.body).headers['x-request-id'], /^[0-9a-f]{32}$/);
    // made ones never repeat, in one worker or across workers
    const ids = new Set();
    for (let i = 0; i < 40; i++) {
      const r = await httpRequest(d.port, { path: '/h2' });
      ids.add(JSON.parse(r.body).headers['x-request-id']);
    }
    assert.equal(ids.size, 40);
  });

  test('hop-by-hop response fields are dropped', async () => {
    const r = await httpRequest(d.port, { path: '/hop' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-secret'], undefined);
    assert.equal(r.headers['keep-alive'], undefined);
    assert.equal(r.body, 'ok');
  });

  test('upstream host: replaces Host', async () => {
    const r = await httpRequest(d.port, { path: '/named', headers: { Host: 'shop.example' } });
    const j = JSON.parse(r.body);
    assert.equal(j.headers.host, 'internal.example');
    assert.equal(j.headers['x-forwarded-host'], 'shop.example');
  });

  test('route header rules, both directions', async () => {
    const r = await httpRequest(d.port, { path: '/rw', headers: { 'X-Remove': 'x', 'X-Set': 'client' } });
    const j = JSON.parse(r.body);
    assert.equal(j.headers['x-set'], 'set');
    assert.equal(j.headers['x-add'], 'added');
    assert.equal(j.headers['x-remove'], undefined);
    assert.equal(r.headers['x-resp-set'], 'yes');
    assert.equal(r.headers['x-upstream'], undefined);
  });

  test('chunked responses, HEAD, 204 and 304', async () => {
    let r = await httpRequest(d.port, { path: '/chunked' });
    assert.equal(r.body, 'hello world');
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    r = await httpRequest(d.port, { path: '/x', method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '');
    assert.ok(Number(r.headers['content-length']) > 0);
    r = await httpRequest(d.port, { path: '/nocontent' });
    assert.equal(r.status, 204);
    r = await httpRequest(d.port, { path: '/notmodified' });
    assert.equal(r.status, 304);
    assert.equal(r.headers.etag, '"x"');
  });

  test('HTTP/1.0 keep-alive client and a chunked upstream body: decoded, then closed', async () => {
    const r = await rawRequest(d.port, 'GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
      { timeout: 5000 });
    assert.equal(r.timedOut, false, 'the client was left waiting for the end of the body');
    assert.doesNotMatch(r.text, /Transfer-Encoding/i);
    assert.match(r.text, /\r\nConnection: close\r\n/i);
    assert.match(r.text, /\r\n\r\nhello world$/);
  });

  test('keep-alive to the upstream: one connection for many requests', async () => {
    const before = up.connections;
    const agent = keepAliveAgent(1);
    for (let i = 0; i < 20; i++) {
      const r = await httpRequest(d.port, { path: `/ka/${i}`, agent });
      assert.equal(r.status, 200);
    }
    agent.destroy();
    assert.ok(up.connections - before <= 1,
      `20 requests opened ${up.connections - before} upstream connections`);
  });

  test('Expect: 100-continue goes through', async () => {
    const raw = 'POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n' +
      'Connection: close\r\n\r\nhello';
    const { text } = await rawRequest(d.port, raw);
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n/);
    assert.match(text, /HTTP\/1\.1 200 OK/);
    assert.match(text, /"body":"hello"/);
  });
});

test('X-Forwarded-For from an IPv6 client: the address without brackets or port', async (t) => {
  const v6 = Object.values(os.networkInterfaces()).flat().some((i) => i?.address === '::1');
  if (!v6) { t.skip('no ::1 on this machine'); return; }
  const up = await echoServer('a');
  t.after(() => up.close());
  const d = await startPortico({ config: proxyConfig({ app: { servers: [{ address: up.address }] } },
    [{ upstream: 'app' }], { listeners: [{ listen: '[::1]:0' }] }) });
  t.after(() => d.stop());
  const r = await httpRequest(d.port, { host: '::1', path: '/v6' });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).headers['x-forwarded-for'], '::1');
});

describe('framing from raw upstreams', () => {
  let up, d;
  before(async () => {
    up = await rawServer((sock, head) => {
      if (head.startsWith('GET /close')) {
        // No length, no chunking: the body ends when the upstream closes.
        sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n');
        sock.write('first,');
        setTimeout(() => sock.end('second'), 30);
      } else if (head.startsWith('GET /garbage')) {
        sock.end('NOT HTTP AT ALL\r\n\r\n');
      } else if (head.startsWith('GET /early')) {
        sock.destroy();
      } else if (head.startsWith('POST /refuse')) {
        // answers at once, before (and without) reading the body
        sock.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno');
      } else if (head.startsWith('GET /dribble')) {
        // the head in pieces, split inside a line and between CR and LF
        const parts = ['HTTP/1.1 2', '00 OK\r\nContent-Len', 'gth: 5\r', '\nX-Tail: t\r\n', '\r\nhello'];
        parts.forEach((p, i) => setTimeout(() => sock.write(p), 20 * i));
      } else if (head.startsWith('GET /midhead')) {
        // larger than one read's first buffer: the head spans buffers
        sock.write(`HTTP/1.1 200 OK\r\nX-Mid: ${'m'.repeat(12 * 1024)}\r\nContent-Length: 2\r\n\r\nok`);
      } else if (head.startsWith('GET /bighead')) {
        sock.write(`HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(70 * 1024)}\r\nContent-Length: 2\r\n\r\nok`);
      } else if (head.startsWith('GET /hints')) {
        sock.write('HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n');
        sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    });
    d = await startPortico({ config: proxyConfig(
      { raw: { servers: [{ address: up.address }], retries: 0, max_fails: 0 } },
      [{ upstream: 'raw' }]) });
  });
  after(async () => { await d?.stop(); await up?.close(); });

  test('a close-delimited body is re-framed as chunked; the client keeps its connection', async () => {
    const conn = await rawRequest(d.port,
      'GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const rs = parseResponses(conn.data).responses;
    assert.equal(rs.length, 2);
    for (const r of rs) {
      assert.equal(r.status, 200);
      assert.equal(r.headers['transfer-encoding'], 'chunked');
      assert.equal(r.body.toString(), 'first,second');
    }
  });

  test('HTTP/1.0 client gets a close-delimited body', async () => {
    const { text } = await rawRequest(d.port, 'GET /close HTTP/1.0\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.doesNotMatch(text, /Transfer-Encoding/i);
    assert.match(text, /\r\n\r\nfirst,second$/);
  });

  test('an invalid response is a 502', async () => {
    const r = await httpRequest(d.port, { path: '/garbage' });
    assert.equal(r.status, 502);
  });

  test('a response head that arrives in pieces, or spans buffers, is read whole; one past 64 KB is a 502', async () => {
    const r = await httpRequest(d.port, { path: '/dribble' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-tail'], 't');
    assert.equal(r.body, 'hello');
    const mid = await httpRequest(d.port, { path: '/midhead' });
    assert.equal(mid.status, 200);
    assert.equal(mid.headers['x-mid'], 'm'.repeat(12 * 1024));
    assert.equal(mid.body, 'ok');
    const big = await httpRequest(d.port, { path: '/bighead' });
    assert.equal(big.status, 502);
  });

  test('a reset before the response is a 502', async () => {
    const r = await httpRequest(d.port, { path: '/early' });
    assert.equal(r.status, 502);
  });

  test('an answer before the upload ends survives a client that said close and goes on sending', async () => {
    // The client leaves the answer unread in its socket while it sends
    // the rest of its body: a connection closed at once would meet those
    // bytes with a reset that wipes the unread answer out.
    const sock = net.connect({ port: d.port, host: '127.0.0.1' });
    await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
    sock.pause(); // nothing is read from the kernel until resume()
    sock.on('error', () => {});
    sock.write('POST /refuse HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 300000\r\n\r\n');
    await delay(300);
    sock.write(Buffer.alloc(300000, 'b'));
    await delay(300);
    const chunks = [];
    sock.on('data', (x) => chunks.push(x));
    const ended = new Promise((r) => { sock.once('close', r); });
    sock.resume();
    await Promise.race([ended, delay(5000)]);
    sock.destroy();
    const got = Buffer.concat(chunks).toString('latin1');
    assert.match(got, /^HTTP\/1\.1 403 Forbidden\r\n/, 'the answer was lost');
  });

  test('103 Early Hints reaches the client before the response', async () => {
    const { text } = await rawRequest(d.port, 'GET /hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 103 Early Hints\r\nLink: <\/s\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK/);
  });
});

describe('errors and health', () => {
  test('refused: 502; no usable server: 503; timeout: 504', async () => {
    const silent = await rawServer(() => {}); // accepts, never answers
    const dead = await deadPort();
    const d = await startPortico({ config: proxyConfig(
      { dead: { servers: [{ address: `127.0.0.1:${dead}` }], max_fails: 1, fail_timeout: '1h' },
        slow: { servers: [{ address: silent.address }], timeouts: { read: '300ms' }, max_fails: 0 } },
      [{ match: { path_prefix: '/dead' }, upstream: 'dead' },
        { match: { path_prefix: '/slow' }, upstream: 'slow' }]) });
    try {
      assert.equal((await httpRequest(d.port, { path: '/dead' })).status, 502);
      // max_fails: 1 took it out: nothing usable is left.
      assert.equal((await httpRequest(d.port, { path: '/dead' })).status, 503);
      assert.equal((await httpRequest(d.port, { path: '/slow' })).status, 504);
      await d.waitForLog(/server 127\.0\.0\.1:\d+ down for/);
    } finally { await d.stop(); await silent.close(); }
  });

  test('retries: a refused server is skipped for an idempotent request', async () => {
    const up = await echoServer('live');
    const dead = await deadPort();
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: `127.0.0.1:${dead}` }, { address: up.address }],
        retries: 1, max_fails: 0 } },
      [{ upstream: 'app' }]) });
    try {
      for (let i = 0; i < 6; i++) {
        const r = await httpRequest(d.port, { path: `/r${i}` });
        assert.equal(r.status, 200, `request ${i}`);
      }
      // A POST is not retried: some land on the dead server and get 502.
      const statuses = [];
      for (let i = 0; i < 6; i++)
        statuses.push((await httpRequest(d.port, { path: '/p', method: 'POST', body: 'x',
          headers: { 'Content-Length': 1 } })).status);
      assert.ok(statuses.includes(502) && statuses.includes(200), statuses.join(','));
    } finally { await d.stop(); await up.close(); }
  });

  test('a pooled connection closed by the upstream is retried transparently', async () => {
    // The upstream answers the first request on a connection and silently
    // closes on the second: the race nginx users see as 502s.
    const up = await rawServer((sock, head, n) => {
      if (n === 1) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      else sock.destroy();
    });
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: up.address }], max_fails: 0 } }, [{ upstream: 'app' }]) });
    try {
      for (let i = 0; i < 5; i++) {
        const r = await httpRequest(d.port, { path: `/s${i}` });
        assert.equal(r.status, 200, `request ${i}`);
        assert.equal(r.body, 'ok');
      }
      assert.ok(up.connections >= 5);
      await d.waitForLog(/closed a pooled connection; retrying/);
    } finally { await d.stop(); await up.close(); }
  });

  test('pooled connections are retired before Node closes them (Keep-Alive: timeout)', async () => {
    const up = await echoServer('ka', { keepAliveTimeout: 1000 }); // sends Keep-Alive: timeout=1
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: up.address }] } }, [{ upstream: 'app' }]) });
    try {
      for (let i = 0; i < 4; i++) {
        const r = await httpRequest(d.port, { path: `/k${i}` });
        assert.equal(r.status, 200);
        await new Promise((res) => setTimeout(res, 900));
      }
      assert.equal(d.linesMatching(/closed a pooled connection/).length, 0);
    } finally { await d.stop(); await up.close(); }
  });
});

describe('shared health', () => {
  test('a server found failing by one worker is skipped by all (passive health in shared memory)', async () => {
    const up = await echoServer('live');
    const dead = await deadPort();
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: `127.0.0.1:${dead}` }, { address: up.address }],
        retries: 1, max_fails: 1, fail_timeout: '1h' } },
      [{ upstream: 'app' }], { workers: 2 }) });
    const agents = await agentPerWorker(d);
    try {
      assert.equal(agents.length, 2);
      const served = new Set();
      for (let i = 0; i < 30; i++) { // both workers, alternately
        const r = await httpRequest(d.port, { path: `/h${i}`, agent: agents[i % 2] });
        assert.equal(r.status, 200);
        served.add(r.headers['x-upstream']);
      }
      // Each worker would try the dead server once if health were per worker.
      assert.equal(d.linesMatching(/trying another/).length, 1, d.logs.join('\n'));
      assert.equal(d.linesMatching(/down for \d+ ms after 1 failures/).length, 1);
    } finally { closeAgents(agents); await d.stop(); await up.close(); }
  });

  test('a server killed mid-test: retries, active checks take it out, then bring it back', async () => {
    const a = await echoServer('a');
    const b = await echoServer('b');
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: a.address }, { address: b.address }], retries: 1,
        max_fails: 0,
        health_check: { path: '/healthz', interval: '200ms', timeout: '500ms', fails: 2, passes: 2 } } },
      [{ upstream: 'app' }], { workers: 2 }) });
    try {
      await waitFor(() => a.seen.some((x) => x.url === '/healthz'), { what: 'a health check' });
      assert.equal(a.seen.find((x) => x.url === '/healthz').headers['user-agent'], 'portico-health-check');
      const port = a.port;
      await a.close();
      // Service goes on through retries while the checks notice.
      for (let i = 0; i < 10; i++)
        assert.equal((await httpRequest(d.port, { path: `/k${i}` })).status, 200);
      await d.waitForLog(new RegExp(`server 127\\.0\\.0\\.1:${port} is down`));
      const before = d.linesMatching(/trying another/).length;
      for (let i = 0; i < 10; i++) {
        const r = await httpRequest(d.port, { path: `/down${i}` });
        assert.equal(r.headers['x-upstream'], 'b');
      }
      assert.equal(d.linesMatching(/trying another/).length, before, 'a down server was still tried');
      // Bring it back on the same port: the checks see it and it serves again.
      a.server.listen(port, '127.0.0.1');
      await new Promise((r) => a.server.once('listening', r));
      await d.waitForLog(new RegExp(`server 127\\.0\\.0\\.1:${port} is up`));
      const seen = new Set();
      for (let i = 0; i < 10; i++)
        seen.add((await httpRequest(d.port, { path: `/up${i}` })).headers['x-upstream']);
      assert.ok(seen.has('a') && seen.has('b'), [...seen].join(','));
    } finally { await d.stop(); await a.close().catch(() => {}); await b.close(); }
  });
});

describe('balancing', () => {
  let a, b, c;
  before(async () => { a = await echoServer('a'); b = await echoServer('b'); c = await echoServer('c'); });
  after(async () => { await a.close(); await b.close(); await c.close(); });

  async function spread(d, n, opts = () => ({})) {
    const count = {};
    for (let i = 0; i < n; i++) {
      const r = await httpRequest(d.port, { path: `/b/${i}`, ...opts(i) });
      const s = JSON.parse(r.body).server;
      count[s] = (count[s] || 0) + 1;
    }
    return count;
  }

  test('round_robin honours weights', async () => {
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: a.address }, { address: b.address, weight: 2 }] } },
      [{ upstream: 'app' }]) });
    try {
      const count = await spread(d, 30);
      assert.deepEqual(count, { a: 10, b: 20 });
    } finally { await d.stop(); }
  });

  test('least_conn sends to the idle server', async () => {
    const slow = await echoServer('slow', { handler(req, res) {
      setTimeout(() => { res.writeHead(200, { 'Content-Length': 6 }); res.end('{"server":"slow"}'.slice(0, 6)); }, 800);
      return true;
    } });
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: slow.address }, { address: a.address }], balance: 'least_conn' } },
      [{ upstream: 'app' }]) });
    try {
      // Three slow requests in flight: least_conn must route new ones to "a".
      const pending = [0, 1].map(() => httpRequest(d.port, { path: '/slow' }).catch(() => null));
      await new Promise((r) => setTimeout(r, 200));
      const count = await spread(d, 6);
      assert.ok((count.a || 0) >= 5, JSON.stringify(count));
      await Promise.all(pending);
    } finally { await d.stop(); await slow.close(); }
  });

  test('hash on a header: a key sticks to a server; adding a server moves only its share', async () => {
    const conf = (servers) => proxyConfig(
      { app: { servers, balance: 'hash', hash_key: 'header:X-User' } }, [{ upstream: 'app' }]);
    const d = await startPortico({ config: conf([{ address: a.address }, { address: b.address }]) });
    try {
      const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
      const first = {};
      for (const u of users) {
        const r = await httpRequest(d.port, { headers: { 'X-User': u } });
        first[u] = JSON.parse(r.body).server;
        const again = await httpRequest(d.port, { headers: { 'X-User': u } });
        assert.equal(JSON.parse(again.body).server, first[u]);
      }
      const used = new Set(Object.values(first));
      assert.equal(used.size, 2);
      await d.reload(conf([{ address: a.address }, { address: b.address }, { address: c.address }]));
      let moved = 0, movedElsewhere = 0;
      for (const u of users) {
        const s = JSON.parse((await httpRequest(d.port, { headers: { 'X-User': u } })).body).server;
        if (s !== first[u]) { moved++; if (s !== 'c') movedElsewhere++; }
      }
      assert.equal(movedElsewhere, 0, 'keys moved between the old servers');
      assert.ok(moved > 5 && moved < 40, `moved ${moved} of 60`);
    } finally { await d.stop(); }
  });
});

describe('streaming', () => {
  test('a slow response to an upload is not cut by client_body', async () => {
    const up = await echoServer('slow', { handler(req, res) {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      let n = 0;
      const t = setInterval(() => {
        res.write(`tick ${++n}\n`);
        if (n === 5) { clearInterval(t); res.end(); }
      }, 400);
      return true;
    } });
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: up.address }] } }, [{ upstream: 'app' }],
      { timeouts: { client_body: '1s' } }) });
    try {
      const r = await httpRequest(d.port, { path: '/u', method: 'POST', body: 'data',
        headers: { 'Content-Length': 4 } });
      assert.equal(r.status, 200);
      assert.equal(r.body, 'tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n');
    } finally { await d.stop(); await up.close(); }
  });

  test('64 MB up and down stream through with a bounded worker RSS', async () => {
    const SIZE = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 'y');
    const up = await echoServer('big', { handler() { return false; } });
    // Replace the handler: download streams SIZE bytes; upload counts.
    up.server.removeAllListeners('request');
    up.server.on('request', (req, res) => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'Content-Length': SIZE });
        let sent = 0;
        const pump = () => {
          while (sent < SIZE) { sent += chunk.length; if (!res.write(chunk)) return res.once('drain', pump); }
          res.end();
        };
        pump();
      } else {
        let n = 0;
        req.on('data', (c) => { n += c.length; });
        req.on('end', () => { res.writeHead(200, { 'Content-Length': String(n).length }); res.end(String(n)); });
      }
    });
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: up.address }] } }, [{ upstream: 'app' }],
      { limits: { max_body_bytes: 0 } }) });
    const rss = () => {
      const [pid] = d.workerPids();
      const m = /VmRSS:\s+(\d+) kB/.exec(require_status(pid));
      return m ? Number(m[1]) * 1024 : 0;
    };
    let peak = 0;
    const timer = setInterval(() => { try { peak = Math.max(peak, rss()); } catch {} }, 20);
    try {
      // Download, read slowly at first so back-pressure has to work.
      const got = await new Promise((resolve, reject) => {
        http.get({ port: d.port, path: '/down', agent: false }, (res) => {
          let n = 0;
          res.pause();
          setTimeout(() => res.resume(), 500);
          res.on('data', (c) => { n += c.length; });
          res.on('end', () => resolve(n));
          res.on('error', reject);
        }).on('error', reject);
      });
      assert.equal(got, SIZE);
      // Upload, chunked.
      const echoed = await new Promise((resolve, reject) => {
        const req = http.request({ port: d.port, path: '/up', method: 'POST', agent: false }, (res) => {
          let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve(Number(b)));
        });
        req.on('error', reject);
        let sent = 0;
        const pump = () => {
          while (sent < SIZE) { sent += chunk.length; if (!req.write(chunk)) return req.once('drain', pump); }
          req.end();
        };
        pump();
      });
      assert.equal(echoed, SIZE);
      console.log(`# streaming 2 x 64 MB: worker peak RSS ${(peak / 1048576).toFixed(1)} MB`);
      if (!SANITIZED)
        assert.ok(peak < 40 * 1024 * 1024, `worker RSS peaked at ${peak} bytes`);
    } finally { clearInterval(timer); await d.stop(); await up.close(); }
  });
});

describe('reading bodies', () => {
  // The worker reads a plain upstream itself, asking for more while the
  // reads come back full, and reads a client's body past libevent's 4 KB;
  // these pin down what it must keep of libevent's reading: every byte
  // in order, back-pressure, the read timeout between reads, and EOF.
  test('a 24 MB body in uneven pieces arrives byte for byte through a slow reader', async () => {
    const SIZE = 24 * 1024 * 1024;
    const body = Buffer.alloc(SIZE);
    let x = 0x9e3779b9;
    for (let i = 0; i < SIZE; i += 4) { // xorshift: no two 4-byte words in a row alike
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      body.writeUInt32LE(x, i);
    }
    const want = crypto.createHash('sha256').update(body).digest('hex');
    const up = await echoServer('pieces', { handler(req, res) {
      res.writeHead(200, { 'Content-Length': SIZE });
      let off = 0, n = 0;
      const pump = () => {
        while (off < SIZE) {
          // 1 byte to 300 KB, now and then after a pause
          const len = Math.min(SIZE - off, 1 + ((n * 7919) % 300000));
          const piece = body.subarray(off, off + len);
          off += len;
          if (++n % 16 === 0) return setTimeout(() => { if (res.write(piece)) pump(); else res.once('drain', pump); }, 2);
          if (!res.write(piece)) return res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return true;
    } });
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: up.address }] } }, [{ upstream: 'app' }]) });
    try {
      for (const pauseMs of [0, 600]) {
        const got = await new Promise((resolve, reject) => {
          http.get({ port: d.port, path: '/pieces', agent: false }, (res) => {
            const h = crypto.createHash('sha256');
            let len = 0;
            if (pauseMs) { res.pause(); setTimeout(() => res.resume(), pauseMs); }
            res.on('data', (c) => { h.update(c); len += c.length; });
            res.on('end', () => resolve({ len, sum: h.digest('hex') }));
            res.on('error', reject);
          }).on('error', reject);
        });
        assert.equal(got.len, SIZE);
        assert.equal(got.sum, want, `body corrupted (client paused ${pauseMs} ms)`);
      }
    } finally { await d.stop(); await up.close(); }
  });

  test('a 24 MB upload in uneven pieces reaches the upstream byte for byte, through a slow reader', async () => {
    // The client side reads more than libevent's 4 KB when a read comes
    // back full (conn_read_more): the body must still arrive whole and
    // in order, with back-pressure from an upstream that reads late.
    const SIZE = 24 * 1024 * 1024;
    const body = crypto.randomBytes(SIZE);
    const want = crypto.createHash('sha256').update(body).digest('hex');
    const up = http.createServer((req, res) => {
      const h = crypto.createHash('sha256');
      let len = 0;
      req.pause();
      setTimeout(() => req.resume(), req.url === '/slow' ? 600 : 0);
      req.on('data', (c) => { h.update(c); len += c.length; });
      req.on('end', () => res.end(JSON.stringify({ len, sum: h.digest('hex') })));
    });
    await new Promise((r) => up.listen(0, '127.0.0.1', r));
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: `127.0.0.1:${up.address().port}` }] } }, [{ upstream: 'app' }],
      { limits: { max_body_bytes: 0 } }) });
    try {
      for (const [path, chunked] of [['/fast', false], ['/slow', false], ['/slow', true]]) {
        const got = await new Promise((resolve, reject) => {
          const headers = chunked ? {} : { 'Content-Length': SIZE };
          const req = http.request({ port: d.port, path, method: 'PUT', agent: false, headers }, (res) => {
            let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve(JSON.parse(b)));
          });
          req.on('error', reject);
          // a body that stops moving fails the test instead of hanging it
          req.setTimeout(20000, () => req.destroy(new Error(`stalled: ${off} of ${SIZE} bytes written`)));
          let off = 0, n = 0;
          const pump = () => {
            while (off < SIZE) {
              const len = Math.min(SIZE - off, 1 + ((n++ * 104729) % 500000));
              const piece = body.subarray(off, off + len);
              off += len;
              if (!req.write(piece)) return req.once('drain', pump);
            }
            req.end();
          };
          pump();
        });
        assert.equal(got.len, SIZE, `${path} chunked=${chunked}`);
        assert.equal(got.sum, want, `body corrupted (${path}, chunked=${chunked})`);
      }
    } finally { await d.stop(); up.close(); up.closeAllConnections?.(); }
  });

  test('an upstream that stops reading a request body is cut by its send timeout: 504', async () => {
    // The upstream takes the head and then reads nothing: portico's
    // writes fill the socket, wait on EV_WRITE, and timeouts.send ends
    // the wait.
    const up = net.createServer((sock) => { sock.once('data', () => sock.pause()); sock.on('error', () => {}); });
    await new Promise((r) => up.listen(0, '127.0.0.1', r));
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: `127.0.0.1:${up.address().port}` }], timeouts: { send: '1s' }, max_fails: 0 } },
      [{ upstream: 'app' }], { limits: { max_body_bytes: 0 } }) });
    try {
      const SIZE = 64 * 1024 * 1024;
      const t0 = Date.now();
      const status = await new Promise((resolve, reject) => {
        const req = http.request({ port: d.port, path: '/put', method: 'PUT', agent: false,
          headers: { 'Content-Length': SIZE } }, (res) => { res.resume(); resolve(res.statusCode); });
        req.on('error', () => {}); // portico may close while the body is still going
        req.setTimeout(20000, () => { req.destroy(); reject(new Error('no answer in 20 s')); });
        const piece = Buffer.alloc(256 * 1024, 120);
        let off = 0;
        const pump = () => {
          while (off < SIZE && !req.destroyed) {
            off += piece.length;
            if (!req.write(piece)) return req.once('drain', pump);
          }
        };
        pump();
      });
      assert.equal(status, 504);
      assert.ok(Date.now() - t0 < 15000, `the 504 took ${Date.now() - t0} ms`);
    } finally { await d.stop(); up.close(); }
  });

  test('the read timeout runs between reads: a slow trickle passes, a stall mid-body is cut', async () => {
    const up = await rawServer((sock, head) => {
      const stall = head.startsWith('GET /stall');
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n');
      let n = 0;
      const t = setInterval(() => {
        if (sock.destroyed) return clearInterval(t);
        if (stall && n === 3) return; // three bytes, then silence
        sock.write('abcdefghijkl'[n]);
        if (++n === 12) clearInterval(t);
      }, 150); // 12 x 150 ms: longer than the read timeout in all
    });
    const d = await startPortico({ config: proxyConfig(
      { app: { servers: [{ address: up.address }], timeouts: { read: '600ms' } } },
      [{ upstream: 'app' }]) });
    try {
      const ok = await httpRequest(d.port, { path: '/trickle' });
      assert.equal(ok.status, 200);
      assert.equal(ok.body, 'abcdefghijkl');
      const t0 = Date.now();
      const cut = await rawRequest(d.port, 'GET /stall HTTP/1.1\r\nHost: x\r\n\r\n', { timeout: 8000 });
      const text = cut.text;
      assert.ok(cut.closed, 'the client connection was not closed');
      assert.match(text, /^HTTP\/1\.1 200 /);
      assert.ok(text.endsWith('\r\n\r\nabc'), `got ${JSON.stringify(text.slice(-20))}`);
      assert.ok(Date.now() - t0 < 5000);
      await d.waitForLog(/read timeout mid-body/);
    } finally { await d.stop(); await up.close(); }
  });
});

function require_status(pid) { return fs.readFileSync(`/proc/${pid}/status`, 'utf8'); }

test('bad chunk framing sent with the head of a proxied request: 400, and the worker lives', async () => {
  // The body is pumped upstream as soon as the request goes: bad framing
  // found then ends the exchange there and then, with nothing after it
  // touching the upstream connection.
  const up = http.createServer((req, res) => { req.resume(); req.on('end', () => res.end('ok')); });
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const d = await startPortico({ config: proxyConfig(
    { app: { servers: [{ address: `127.0.0.1:${up.address().port}` }] } }, [{ upstream: 'app' }]) });
  const raw = (req) => new Promise((resolve) => {
    const c = net.connect(d.port, '127.0.0.1', () => c.write(req));
    let b = '';
    c.on('data', (x) => { b += x; });
    c.on('close', () => resolve(b));
    c.on('error', () => {});
    c.setTimeout(8000, () => c.destroy());
  });
  try {
    const H = 'POST /up HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n';
    for (const bad of ['zz\r\nhello\r\n0\r\n\r\n', '5\r\nhelloXX0\r\n\r\n']) {
      const got = await raw(H + bad);
      assert.match(got, /^HTTP\/1\.1 400 /, `answer to ${JSON.stringify(bad)}: ${JSON.stringify(got.slice(0, 80))}`);
    }
    const ok = await raw('GET /after HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n');
    assert.match(ok, /^HTTP\/1\.1 200 /);
    assert.deepEqual(d.linesMatching(/worker \d+ \(pid \d+\) exited/), [], 'a worker died');
  } finally { await d.stop(); up.close(); }
});

test('a client that goes while its request waits on the upstream: the upstream connection is closed', async () => {
  // The request arrives with the connection and is read at once, before
  // the socket is watched: going to the upstream must still watch it.
  let closedAt = 0;
  let sentAt = 0;
  let requested = false;
  const up = http.createServer((req, res) => {
    requested = true;
    req.socket.on('close', () => { closedAt = Date.now(); });
    setTimeout(() => { if (!res.destroyed) res.end('late\n'); }, 4000);
  });
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const d = await startPortico({ config: proxyConfig(
    { app: { servers: [{ address: `127.0.0.1:${up.address().port}` }] } }, [{ upstream: 'app' }]) });
  try {
    // The worker is stopped while the client connects and sends, so the
    // request is there when the connection is accepted.
    const [wpid] = await d.waitWorkers(1);
    process.kill(wpid, 'SIGSTOP');
    const s = net.connect(d.port, '127.0.0.1');
    try {
      await new Promise((r) => s.once('connect', r));
      s.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
      await delay(100);
    } finally { process.kill(wpid, 'SIGCONT'); }
    await waitFor(() => requested, { what: 'the request upstream' });
    await delay(200);
    sentAt = Date.now();
    s.destroy();
    await waitFor(() => closedAt > 0, { timeout: 3000, what: 'the upstream connection closed' });
    assert.ok(closedAt - sentAt < 3000);
  } finally { await d.stop(); up.close(); up.closeAllConnections?.(); }
});

test('a keep-alive client that goes while its second request waits: the upstream connection is closed; a pipelined one is answered', async () => {
  // Between requests the connection dozes, and its wake event goes on
  // watching the socket while the next request waits on the upstream:
  // it must hand EOF, or pipelined bytes, over to the reads.
  const closes = [];
  const up = http.createServer((req, res) => {
    if (req.url === '/fast') return res.end('fast\n');
    req.socket.once('close', () => closes.push(Date.now()));
    setTimeout(() => { if (!res.destroyed) res.end('late\n'); }, req.url === '/slow' ? 5000 : 300);
  });
  up.keepAliveTimeout = 30000;
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const d = await startPortico({ config: proxyConfig(
    { app: { servers: [{ address: `127.0.0.1:${up.address().port}` }] } }, [{ upstream: 'app' }]) });
  try {
    const c = await RawConn.open(d.port);
    await c.write('GET /fast HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await c.read(1))[0].status, 200);
    await delay(100); // dozing now
    await c.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await delay(300); // the request waits on the upstream
    const goneAt = Date.now();
    c.destroy();
    await waitFor(() => closes.length > 0, { timeout: 3000, what: 'the upstream connection closed' });
    assert.ok(closes[0] - goneAt < 3000);

    // Pipelined behind a waiting request: both answered, in order.
    const p = await RawConn.open(d.port);
    await p.write('GET /fast HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await p.read(1))[0].status, 200);
    await delay(100);
    await p.write('GET /medium HTTP/1.1\r\nHost: x\r\n\r\n');
    await delay(50);
    await p.write('GET /fast HTTP/1.1\r\nHost: x\r\n\r\n');
    const [a, b] = await p.read(2);
    assert.equal(a.body.toString(), 'late\n');
    assert.equal(b.body.toString(), 'fast\n');
    p.destroy();
  } finally { await d.stop(); up.close(); up.closeAllConnections?.(); }
});

test('small answers pipelined behind a client that reads nothing: every byte arrives in order, and /metrics counts them', async () => {
  // Once the client's socket is full, the rest of an answer waits in
  // the output, and the answers after it queue behind.
  const N = 3000, SIZE = 3000;
  const bodyOf = (i) => `<${i}>`.padEnd(SIZE, String.fromCharCode(97 + (i % 26)));
  const up = http.createServer((req, res) => {
    const b = bodyOf(Number(req.url.slice(1)));
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': SIZE });
    res.end(b);
  });
  up.keepAliveTimeout = 30000;
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const d = await startPortico({ config: proxyConfig(
    { app: { servers: [{ address: `127.0.0.1:${up.address().port}` }] } }, [{ upstream: 'app' }],
    { admin: { listen: '127.0.0.2:0' } }) });
  const adminPort = Number(d.addresses.find((a) => a.startsWith('127.0.0.2:')).split(':')[1]);
  const sentTotal = async () => {
    const r = await httpRequest(adminPort, { path: '/metrics', host: '127.0.0.2' });
    return Number(/^portico_bytes_sent_total (\d+)$/m.exec(r.body)[1]);
  };
  try {
    const before = await sentTotal();
    const { responses, bytes } = await pipelineUnread(d.port,
      Array.from({ length: N }, (_, i) => `GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`));
    responses.forEach((r, i) => {
      assert.equal(r.status, 200);
      assert.equal(r.body.toString('latin1'), bodyOf(i), `answer ${i}`);
    });
    assert.ok(bytes > 8 * 1024 * 1024, 'over 8 MB: more than the sockets hold unread');
    // The counters are added up when a request ends and when a connection
    // closes: every byte sent.
    let after = 0;
    await waitFor(async () => (after = await sentTotal()) - before >= bytes,
      { timeout: 5000, what: `portico_bytes_sent_total to count ${bytes} bytes` }).catch(() => {});
    assert.ok(after - before >= bytes && after - before < bytes + 65536,
      `portico_bytes_sent_total moved by ${after - before} for ${bytes} bytes sent`);
  } finally { await d.stop(); up.close(); up.closeAllConnections?.(); }
});

test('a proxied answer with Connection: close: the worker has closed its socket by the time the client sees the end', async () => {
  // As for a hit (140-cache): the quick close, not the lingering one.
  const up = http.createServer((req, res) => res.end('ok\n'));
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const d = await startPortico({ config: proxyConfig(
    { app: { servers: [{ address: `127.0.0.1:${up.address().port}` }] } }, [{ upstream: 'app' }]) });
  try {
    for (let i = 0; i < 3; i++) {
      const { response, held } = await closingRequest(d,
        'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.equal(response.body.toString(), 'ok\n');
      assert.ok(!held, 'the worker still holds the socket');
    }
  } finally { await d.stop(); up.close(); up.closeAllConnections?.(); }
});

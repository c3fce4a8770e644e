// 020-serve: the basics of serving.  Master + workers, respond routes
// matched on host and path, 404, HEAD, keep-alive, HTTP/1.0, pipelining,
// Expect: 100-continue, Connection: close, and the access log.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { httpRequest, keepAliveAgent, parseOne, rawRequest, RawConn,
  startPortico, tempDir, waitFor } from './lib/harness.mjs';

const WORKERS = 2;
const BIG = 'x'.repeat(4000) + '\n';

function serveConfig(dir) {
  return {
    workers: WORKERS,
    error_log: { level: 'info' },
    access_log: { path: path.join(dir, 'access.log'), format: 'combined' },
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [
      { match: { host: 'a.example', path_prefix: '/a' },
        respond: { status: 200, body: 'route-a\n', headers: { 'X-Route': 'a' } } },
      { match: { host: '*.wild.example', path_prefix: '/' },
        respond: { status: 201, body: 'wild' } },
      { match: { path_prefix: '/api/' },
        respond: { status: 200, body: '{"ok":true}',
          headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' } } },
      { match: { path_prefix: '/empty' }, respond: { status: 204 } },
      { match: { path_prefix: '/n/1' }, respond: { status: 200, body: 'one' } },
      { match: { path_prefix: '/n/2' }, respond: { status: 200, body: 'two!' } },
      { match: { path_prefix: '/n/3' }, respond: { status: 200, body: 'three' } },
      { match: { path_prefix: '/n/4' }, respond: { status: 200, body: 'four!!' } },
      { match: { path_prefix: '/n/5' }, respond: { status: 200, body: 'five!!!' } },
      { match: { path_prefix: '/big' }, respond: { status: 200, body: BIG } },
    ],
  };
}

const get = (p, host = 'x', extra = '') =>
  `GET ${p} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;

describe('serving respond routes', () => {
  let d;
  let dir;
  before(async () => {
    dir = tempDir();
    d = await startPortico({ dir, config: serveConfig(dir) });
  });
  after(async () => { await d?.stop(); });

  test(`the master runs ${WORKERS} workers`, async () => {
    const pids = await d.waitWorkers(WORKERS);
    assert.equal(new Set(pids).size, WORKERS);
    assert.ok(!pids.includes(d.pid));
    assert.match(d.logs.join('\n'), new RegExp(`ready: ${WORKERS} workers, generation 1, pid ${d.pid}`));
  });

  test('host + path route, with its headers and the common ones', async () => {
    const r = await httpRequest(d.port, { path: '/a/x', headers: { Host: 'a.example' } });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'route-a\n');
    assert.equal(r.headers['x-route'], 'a');
    assert.equal(r.headers.server, 'portico');
    assert.ok(r.headers.date && !Number.isNaN(Date.parse(r.headers.date)), `Date: ${r.headers.date}`);
    assert.equal(r.headers['content-length'], '8');
    assert.match(r.headers['content-type'], /^text\/plain/);
  });

  test('host matching ignores case and port; a wrong host falls through', async () => {
    let r = await httpRequest(d.port, { path: '/a', headers: { Host: 'A.Example:8080' } });
    assert.equal(r.body, 'route-a\n');
    r = await httpRequest(d.port, { path: '/a', headers: { Host: 'b.example' } });
    assert.equal(r.status, 404);
    r = await httpRequest(d.port, { path: '/b', headers: { Host: 'a.example' } });
    assert.equal(r.status, 404, 'the path prefix must match too');
  });

  test('wildcard host matches subdomains only', async () => {
    let r = await httpRequest(d.port, { path: '/z', headers: { Host: 'x.wild.example' } });
    assert.equal(r.status, 201);
    assert.equal(r.body, 'wild');
    r = await httpRequest(d.port, { path: '/z', headers: { Host: 'a.b.wild.example' } });
    assert.equal(r.status, 201);
    r = await httpRequest(d.port, { path: '/z', headers: { Host: 'wild.example' } });
    assert.equal(r.status, 404);
  });

  test('path-only route, configured Content-Type kept', async () => {
    const r = await httpRequest(d.port, { path: '/api/v1?q=1', headers: { Host: 'any.example' } });
    assert.equal(r.status, 200);
    assert.equal(r.body, '{"ok":true}');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['cache-control'], 'no-store');
  });

  test('no match gives 404', async () => {
    const r = await httpRequest(d.port, { path: '/nothing/here', headers: { Host: 'x' } });
    assert.equal(r.status, 404);
    assert.equal(r.headers.server, 'portico');
    assert.equal(Number(r.headers['content-length']), Buffer.byteLength(r.body));
  });

  test('204 carries no body and no Content-Length', async () => {
    const res = await rawRequest(d.port, get('/empty', 'x', 'Connection: close\r\n'));
    const r = parseOne(res.data);
    assert.equal(r.status, 204);
    assert.equal(r.headers['content-length'], undefined);
    assert.equal(res.data.length, r.raw.length, 'no bytes after the 204 head');
  });

  test('HEAD: same headers and Content-Length as GET, no body', async () => {
    const g = parseOne((await rawRequest(d.port, get('/a/h', 'a.example', 'Connection: close\r\n'))).data);
    const res = await rawRequest(d.port, 'HEAD /a/h HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n');
    assert.ok(res.closed);
    const h = parseOne(res.data, { isHead: () => true });
    assert.equal(h.status, 200);
    assert.equal(h.headers['content-length'], g.headers['content-length']);
    assert.equal(h.headers['x-route'], 'a');
    assert.equal(h.body.length, 0);
    assert.equal(res.data.length, h.raw.length, 'no body bytes after a HEAD response');
    const n = await rawRequest(d.port, 'HEAD /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const h404 = parseOne(n.data, { isHead: () => true });
    assert.equal(h404.status, 404);
    assert.equal(n.data.length, h404.raw.length, 'no body after a HEAD 404');
  });

  test('keep-alive: node agent reuses one socket for several requests', async () => {
    const agent = keepAliveAgent(1);
    try {
      const ports = new Set();
      for (let i = 0; i < 5; i++) {
        const r = await httpRequest(d.port, { path: '/n/1', agent, headers: { Host: 'x' } });
        assert.equal(r.status, 200);
        assert.equal(r.body, 'one');
        assert.equal(r.reused, i > 0, `request ${i} reusedSocket`);
        ports.add(r.localPort);
      }
      assert.equal(ports.size, 1, 'all requests went over one connection');
    } finally {
      agent.destroy();
    }
  });

  test('keep-alive: raw connection answers request after request', async () => {
    const c = await RawConn.open(d.port);
    try {
      for (const [p, body] of [['/n/1', 'one'], ['/n/2', 'two!'], ['/nope', null], ['/n/3', 'three']]) {
        await c.write(get(p));
        const [r] = await c.read(1);
        if (body === null) assert.equal(r.status, 404);
        else assert.equal(r.body.toString(), body);
        assert.equal(r.headers.connection, undefined, 'HTTP/1.1 keep-alive sends no Connection header');
      }
      assert.equal(c.closed, false);
    } finally {
      c.destroy();
    }
  });

  test('HTTP/1.0 without keep-alive: answered, then closed', async () => {
    const res = await rawRequest(d.port, 'GET /n/2 HTTP/1.0\r\n\r\n');
    assert.ok(res.closed, 'server closes after an HTTP/1.0 response');
    assert.ok(!res.timedOut);
    const r = parseOne(res.data);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'two!');
    assert.match(r.headers.connection ?? '', /close/i);
  });

  test('HTTP/1.0 with Connection: keep-alive stays open', async () => {
    const c = await RawConn.open(d.port);
    try {
      const req = 'GET /n/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n';
      await c.write(req);
      const [r1] = await c.read(1);
      assert.equal(r1.body.toString(), 'three');
      assert.match(r1.headers.connection ?? '', /keep-alive/i);
      await c.write(req);
      const [r2] = await c.read(1);
      assert.equal(r2.body.toString(), 'three');
      // without the header the exchange is the last one
      await c.write('GET /n/1 HTTP/1.0\r\n\r\n');
      const [r3] = await c.read(1);
      assert.equal(r3.body.toString(), 'one');
      assert.ok(await c.waitClosed(), 'closed after the plain HTTP/1.0 request');
    } finally {
      c.destroy();
    }
  });

  test('pipelining: 5 requests in one write are answered in order', async () => {
    const c = await RawConn.open(d.port);
    try {
      const reqs = [
        get('/n/1'),
        'HEAD /n/2 HTTP/1.1\r\nHost: x\r\n\r\n',
        get('/missing'),
        'POST /n/3 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
        'POST /n/4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
        get('/n/5', 'x', 'Connection: close\r\n'),
      ];
      await c.write(reqs.join(''));
      const rs = await c.read(6, { head: [false, true, false, false, false, false] });
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 404, 200, 200, 200]);
      assert.deepEqual(rs.map((r) => r.body.toString()),
        ['one', '', rs[2].body.toString(), 'three', 'four!!', 'five!!!']);
      assert.equal(rs[1].headers['content-length'], '4', 'HEAD says the GET length');
      assert.match(rs[5].headers.connection ?? '', /close/i);
      assert.ok(await c.waitClosed(), 'closed after Connection: close');
      assert.equal(c.pending.length, 0, 'no stray bytes after the last response');
    } finally {
      c.destroy();
    }
  });

  test('pipelining 100 requests with 4 KB answers (400 KB out), slow reader', async () => {
    const reqs = get('/big').repeat(99) + get('/n/5', 'x', 'Connection: close\r\n');
    const c = await RawConn.open(d.port);
    try {
      c.sock.pause(); // let the server's output back up first
      await c.write(reqs);
      await new Promise((r) => setTimeout(r, 300));
      c.sock.resume();
      const rs = await c.read(100);
      assert.equal(rs.filter((r) => r.status === 200 && r.body.toString() === BIG).length, 99);
      assert.equal(rs[99].body.toString(), 'five!!!');
      assert.ok(await c.waitClosed());
    } finally {
      c.destroy();
    }
  });

  test('chunked body with extensions and trailers; connection stays usable', async () => {
    const c = await RawConn.open(d.port);
    try {
      await c.write('POST /n/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '3;name=value\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: yes\r\n\r\n');
      const [r] = await c.read(1);
      assert.equal(r.body.toString(), 'one');
      await c.write(get('/n/2'));
      assert.equal((await c.read(1))[0].body.toString(), 'two!');
    } finally {
      c.destroy();
    }
  });

  for (const n of [1, 2]) {
    test(`${n} empty line(s) before the request line are skipped (RFC 9112 2.2)`, async () => {
      const res = await rawRequest(d.port, '\r\n'.repeat(n) + get('/n/3', 'x', 'Connection: close\r\n'),
        { timeout: 8000 });
      assert.ok(res.data.length > 0, `no answer within 8 s (timedOut=${res.timedOut})`);
      const r = parseOne(res.data);
      assert.equal(r.status, 200, `got ${r.status} ${r.reason}`);
      assert.equal(r.body.toString(), 'three');
    });
  }

  test('Expect: 100-continue gets 100 first, then the response after the body', async () => {
    const c = await RawConn.open(d.port);
    try {
      await c.write('POST /n/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n');
      const [cont] = await c.read(1);
      assert.equal(cont.status, 100);
      assert.equal(cont.raw.toString(), 'HTTP/1.1 100 Continue\r\n\r\n');
      assert.equal(c.pending.length, 0, 'no final response before the body');
      await c.write('0123456789');
      const [r] = await c.read(1);
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'one');
      // the connection is still usable: the body was consumed exactly
      await c.write(get('/n/2'));
      const [r2] = await c.read(1);
      assert.equal(r2.body.toString(), 'two!');
    } finally {
      c.destroy();
    }
  });

  test('Connection: close: response says so and the server closes', async () => {
    const res = await rawRequest(d.port, get('/n/4', 'x', 'Connection: close\r\n'));
    assert.ok(res.closed && !res.timedOut, 'server closed the connection');
    const r = parseOne(res.data);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'four!!');
    assert.match(r.headers.connection ?? '', /close/i);
  });

  test('access log: combined format plus request time', async () => {
    const log = path.join(dir, 'access.log');
    const tag = `/a/logged-${process.pid}-${Date.now()}`;
    await rawRequest(d.port, `GET ${tag}?q=1 HTTP/1.1\r\nHost: a.example\r\n` +
      'Referer: http://ref.example/page\r\nUser-Agent: it-agent/1.0 "quoted"\r\n' +
      'Connection: close\r\n\r\n');
    await rawRequest(d.port, `HEAD ${tag}-404 HTTP/1.0\r\n\r\n`);
    const lines = await waitFor(() => {
      const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
      const ls = text.split('\n').filter((l) => l.includes(tag));
      return ls.length >= 2 ? ls : null;
    }, { what: 'two access log lines' });
    // after the request time: upstream and its time ("- -" for respond routes)
    const UPSTREAM = '(?: - -)?';
    const esc = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    const clf = '127\\.0\\.0\\.1 - - \\[\\d{2}/[A-Z][a-z]{2}/\\d{4}:\\d{2}:\\d{2}:\\d{2} \\+0000\\]';
    assert.match(lines[0], new RegExp(`^${clf} "GET ${esc(tag)}\\?q=1 HTTP/1\\.1" 200 8 ` +
      '"http://ref\\.example/page" "it-agent/1\\.0 \\\\x22quoted\\\\x22" \\d+\\.\\d{3}' + UPSTREAM + '$'));
    assert.match(lines[1], new RegExp(`^${clf} "HEAD ${esc(tag)}-404 HTTP/1\\.0" 404 0 "-" "-" \\d+\\.\\d{3}${UPSTREAM}$`));
  });
});

test('the configured backlog holds: 300 connects wait while the worker is stopped', async (t) => {
  // A worker that re-listened with a backlog of its own (libevent's
  // listener does so unless told not to) would leave room for ~129.
  const d = await startPortico({ config: {
    workers: 1,
    error_log: { level: 'info' },
    access_log: { format: 'off' },
    listeners: [{ listen: '127.0.0.1:0', backlog: 1000 }],
    routes: [{ respond: { status: 200, body: 'ok' } }],
  } });
  t.after(() => d.stop());
  const [worker] = await d.waitWorkers(1);
  // Stopped before it set its listener up, the worker could not show a
  // backlog of its own: one answer first proves it did.
  const first = await rawRequest(d.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(first.text, /\r\n\r\nok$/);
  const conns = [];
  t.after(() => { for (const s of conns) s.destroy(); });
  process.kill(worker, 'SIGSTOP');
  let connected;
  try {
    connected = await Promise.all(Array.from({ length: 300 }, () => new Promise((resolve) => {
      const s = net.connect(d.port, '127.0.0.1');
      conns.push(s);
      const timer = setTimeout(() => resolve(false), 2500);
      s.once('connect', () => { clearTimeout(timer); resolve(true); });
      s.once('error', () => { clearTimeout(timer); resolve(false); });
    })));
  } finally { process.kill(worker, 'SIGCONT'); }
  assert.equal(connected.filter(Boolean).length, 300, 'every connect completed in the kernel');
  // and each is served once the worker runs again
  const answers = await Promise.all(conns.map((s) => new Promise((resolve) => {
    let got = '';
    s.on('data', (b) => { got += b; if (/\r\n\r\nok$/.test(got)) resolve(true); });
    s.once('close', () => resolve(/\r\n\r\nok$/.test(got)));
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  })));
  assert.equal(answers.filter(Boolean).length, 300);
});

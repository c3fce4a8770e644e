// 120-tls: TLS termination and TLS to upstreams, with certificates made
// at test time by the openssl command: a private CA, RSA and ECDSA leaves
// for the same names, a wildcard, and an upstream certificate.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { startPortico, tempDir, waitFor, workerOf } from './lib/harness.mjs';

const openssl = (dir, ...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

/** A CA and leaves signed by it, in dir.  Returns file paths. */
function makePki(dir) {
  const ext = (names) => {
    const f = path.join(dir, `ext-${crypto.randomUUID()}.cnf`);
    fs.writeFileSync(f, `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n` +
      'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
    return f;
  };
  const ca = (name) => {
    openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', `/CN=${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.crt`);
  };
  const leaf = (name, cn, names, keyArgs, caName = 'ca') => {
    openssl(dir, 'req', '-new', '-newkey', ...keyArgs, '-nodes', '-subj', `/CN=${cn}`,
      '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`,
      '-CAcreateserial', '-days', '30', '-extfile', ext(names), '-out', `${name}.crt`);
  };
  ca('ca');
  ca('otherca');
  const rsa = ['rsa:2048'];
  const ec = ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  leaf('default', 'default.test', ['default.test', 'localhost'], ec);
  leaf('site-rsa', 'site.test', ['site.test'], rsa);
  leaf('site-ec', 'site.test', ['site.test'], ec);
  leaf('wild', '*.wild.test', ['*.wild.test'], ec);
  leaf('upstream', 'upstream.test', ['upstream.test'], ec);
  leaf('default2', 'default-v2.test', ['default.test', 'localhost'], ec);
  return {
    ca: fs.readFileSync(path.join(dir, 'ca.crt')),
    file: (n) => path.join(dir, n),
  };
}

function tlsConfig(pki, extra = {}) {
  return {
    workers: 2,
    error_log: { level: 'debug' },
    access_log: { format: 'off' },
    listeners: [
      { listen: '127.0.0.1:0', tls: { certificates: [
        { cert: pki.file('default.crt'), key: pki.file('default.key') },
        { cert: pki.file('site-rsa.crt'), key: pki.file('site-rsa.key') },
        { cert: pki.file('site-ec.crt'), key: pki.file('site-ec.key') },
        { cert: pki.file('wild.crt'), key: pki.file('wild.key') },
      ] } },
      { listen: '127.0.0.2:0' },
    ],
    routes: [
      { match: { path_prefix: '/secure' }, https_redirect: true, respond: { status: 200, body: 'secure\n' } },
      { respond: { status: 200, body: 'hello over tls\n' } },
    ],
    ...extra,
  };
}

/** One TLS connection: resolves the connected socket. */
function connect(port, opts = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => resolve(s));
    s.once('error', reject);
  });
}

/** An HTTP/1.1 GET over an open TLS socket; resolves the body. */
function getOver(sock, p = '/', host = 'localhost') {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d) => {
      buf += d;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
      if (buf.length >= end + 4 + len) {
        sock.off('data', onData);
        resolve({ head: buf.slice(0, end), body: buf.slice(end + 4, end + 4 + len) });
      }
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.write(`GET ${p} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}


describe('TLS termination', () => {
  let dir, pki, d;
  before(async () => {
    dir = tempDir();
    pki = makePki(dir);
    d = await startPortico({ config: tlsConfig(pki) });
  });
  after(async () => { await d?.stop(); });

  test('handshake, keep-alive and ALPN http/1.1', async () => {
    const s = await connect(d.port, { ca: pki.ca, rejectUnauthorized: true, servername: 'localhost',
      ALPNProtocols: ['h2', 'http/1.1'] });
    try {
      assert.equal(s.alpnProtocol, 'http/1.1');
      assert.ok(['TLSv1.2', 'TLSv1.3'].includes(s.getProtocol()));
      for (let i = 0; i < 3; i++)
        assert.equal((await getOver(s, `/k${i}`)).body, 'hello over tls\n');
    } finally { s.destroy(); }
  });

  test('SNI picks the certificate: exact, wildcard, default', async () => {
    const cn = async (servername) => {
      const s = await connect(d.port, servername ? { servername } : {});
      const c = s.getPeerCertificate().subject.CN;
      s.destroy();
      return c;
    };
    assert.equal(await cn('site.test'), 'site.test');
    assert.equal(await cn('a.wild.test'), '*.wild.test');
    assert.equal(await cn('unknown.test'), 'default.test');
    assert.equal(await cn(undefined), 'default.test');
  });

  test('RSA and ECDSA certificates side by side for the same name', async () => {
    const keyType = async (sigalgs) => {
      const s = await connect(d.port, { servername: 'site.test', sigalgs, maxVersion: 'TLSv1.2' });
      const c = s.getPeerX509Certificate();
      s.destroy();
      return c.publicKey.asymmetricKeyType;
    };
    assert.equal(await keyType('ECDSA+SHA256'), 'ec');
    assert.equal(await keyType('RSA+SHA256:RSA-PSS+SHA256'), 'rsa');
  });

  test('TLS 1.0 and 1.1 are refused', async () => {
    for (const v of ['TLSv1', 'TLSv1.1']) {
      await assert.rejects(connect(d.port, { minVersion: v, maxVersion: v,
        ciphers: 'DEFAULT@SECLEVEL=0' }), (e) => /version|protocol/i.test(`${e.code} ${e.message}`));
    }
    // still serving
    const s = await connect(d.port);
    assert.equal((await getOver(s)).body, 'hello over tls\n');
    s.destroy();
  });

  test('plain HTTP to the TLS port: one debug line, a closed connection', async () => {
    const before = d.linesMatching(/TLS: .*http request/i).length;
    const closed = await new Promise((resolve) => {
      const s = net.connect(d.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('data', () => {});
      s.on('close', () => resolve(true));
      s.on('error', () => {});
    });
    assert.ok(closed);
    await waitFor(() => d.linesMatching(/TLS: .*http request/i).length > before, { what: 'the debug line' });
    const s = await connect(d.port);
    assert.equal((await getOver(s)).body, 'hello over tls\n');
    s.destroy();
  });

  for (const version of ['TLSv1.2', 'TLSv1.3']) {
    test(`${version} session resumption works on whichever worker the connection lands`, async () => {
      let session;
      const first = await connect(d.port, { maxVersion: version, minVersion: version, servername: 'localhost' });
      first.on('session', (s) => { session = s; }); // TLS 1.3: after the handshake
      await getOver(first);
      if (version === 'TLSv1.2') session = first.getSession();
      await waitFor(() => session, { what: 'a session ticket' });
      const firstWorker = workerOf(d, first.localPort);
      first.destroy();
      let otherWorkerResumed = 0, tries = 0;
      // Until a few resumptions landed on another worker (bounded).  The
      // connections stay open: the kernel wakes the worker that waited
      // first, and only one holding over its share leaves the next
      // connections to the other (worker.c, worker_over_share).
      const held = [];
      try {
        for (; tries < 64 && otherWorkerResumed < 3; tries++) {
          const s = await connect(d.port, { session, maxVersion: version, minVersion: version,
            servername: 'localhost' });
          held.push(s);
          await getOver(s);
          const w = workerOf(d, s.localPort);
          assert.equal(s.isSessionReused(), true, `connection ${tries} (worker ${w}) did not resume`);
          if (w !== firstWorker) otherWorkerResumed++;
        }
      } finally {
        held.forEach((s) => s.destroy());
      }
      console.log(`# ${version}: ${tries} resumed connections, ${otherWorkerResumed} on another worker than the first`);
      assert.ok(otherWorkerResumed > 0, 'no connection reached the other worker');
    });
  }

  test('https_redirect sends plain-HTTP requests to https with 308', async () => {
    const port2 = d.ports[1];
    const r = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.2', port: port2, path: '/secure/page?q=1', headers: { Host: 'shop.test:8080' } },
        (res) => { res.resume(); res.on('end', () => resolve(res)); }).on('error', reject);
    });
    assert.equal(r.statusCode, 308);
    assert.equal(r.headers.location, 'https://shop.test/secure/page?q=1');
    const s = await connect(d.port);
    assert.equal((await getOver(s, '/secure/x')).body, 'secure\n');
    s.destroy();
  });
});

describe('certificate reload', () => {
  test('SIGHUP swaps the certificate without dropping an open connection; a bad key is rejected', async () => {
    const dir = tempDir();
    const pki = makePki(dir);
    const live = (n) => path.join(dir, `live.${n}`);
    fs.copyFileSync(pki.file('default.crt'), live('crt'));
    fs.copyFileSync(pki.file('default.key'), live('key'));
    const conf = { workers: 2, access_log: { format: 'off' },
      listeners: [{ listen: '127.0.0.1:0', tls: { certificates: [{ cert: live('crt'), key: live('key') }] } }],
      routes: [{ respond: { status: 200, body: 'ok\n' } }] };
    const d = await startPortico({ config: conf });
    try {
      const old = await connect(d.port);
      assert.equal(old.getPeerCertificate().subject.CN, 'default.test');
      assert.equal((await getOver(old)).body, 'ok\n');
      fs.copyFileSync(pki.file('default2.crt'), live('crt'));
      fs.copyFileSync(pki.file('default2.key'), live('key'));
      const r = await d.reload(conf);
      assert.ok(r.ok, r.lines.join('\n'));
      assert.equal((await getOver(old)).body, 'ok\n', 'the open connection broke');
      const fresh = await connect(d.port);
      assert.equal(fresh.getPeerCertificate().subject.CN, 'default-v2.test');
      fresh.destroy();
      // A key that does not match: rejected with its line, old one serves.
      fs.copyFileSync(pki.file('wild.key'), live('key'));
      const bad = await d.reload(conf);
      assert.equal(bad.ok, false);
      assert.ok(bad.lines.some((l) => /reload rejected: .*:\d+:\d+: error: .*key: does not match the certificate/.test(l)),
        bad.lines.join('\n'));
      const still = await connect(d.port);
      assert.equal(still.getPeerCertificate().subject.CN, 'default-v2.test');
      assert.equal((await getOver(still)).body, 'ok\n');
      still.destroy();
      old.destroy();
    } finally { await d.stop(); }
  });
});

describe('TLS with the proxy', () => {
  let dir, pki, up, d, plainUp;
  before(async () => {
    dir = tempDir();
    pki = makePki(dir);
    const handler = (req, res) => {
      if (req.url.startsWith('/events')) {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        let n = 0;
        const t = setInterval(() => res.write(`data: ${++n}\n\n`), 50);
        req.on('close', () => clearInterval(t));
        return;
      }
      if (req.method === 'PUT') { // the body's length and digest, as received
        const h = crypto.createHash('sha256');
        let len = 0;
        req.on('data', (c) => { h.update(c); len += c.length; });
        req.on('end', () => res.end(JSON.stringify({ len, sum: h.digest('hex') })));
        return;
      }
      const body = JSON.stringify({ proto: req.headers['x-forwarded-proto'], url: req.url });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    up = https.createServer({ cert: fs.readFileSync(pki.file('upstream.crt')),
      key: fs.readFileSync(pki.file('upstream.key')) }, handler);
    new WebSocketServer({ server: up, path: '/up/ws' }).on('connection', (ws) =>
      ws.on('message', (m, bin) => ws.send(m, { binary: bin })));
    await new Promise((r) => up.listen(0, '127.0.0.1', r));
    plainUp = http.createServer(handler);
    new WebSocketServer({ server: plainUp, path: '/ws' }).on('connection', (ws) =>
      ws.on('message', (m, bin) => ws.send(m, { binary: bin })));
    await new Promise((r) => plainUp.listen(0, '127.0.0.1', r));
    const upAddr = `127.0.0.1:${up.address().port}`;
    d = await startPortico({ config: tlsConfig(pki, {
      upstreams: {
        secure: { servers: [{ address: upAddr }], tls: { ca: pki.file('ca.crt'), sni: 'upstream.test' },
          health_check: { path: '/hc', interval: '100ms', fails: 1, passes: 1 } },
        wrongca: { servers: [{ address: upAddr }], retries: 0, max_fails: 0,
          tls: { ca: pki.file('otherca.crt'), sni: 'upstream.test' } },
        plain: { servers: [{ address: `127.0.0.1:${plainUp.address().port}` }] },
      },
      routes: [
        { match: { path_prefix: '/up/' }, upstream: 'secure' },
        { match: { path_prefix: '/wrong/' }, upstream: 'wrongca' },
        { upstream: 'plain' },
      ],
    }) });
  });
  after(async () => {
    await d?.stop();
    up?.closeAllConnections(); up?.close();
    plainUp?.closeAllConnections(); plainUp?.close();
  });

  test('X-Forwarded-Proto is https for requests that came over TLS', async () => {
    const s = await connect(d.port);
    assert.equal(JSON.parse((await getOver(s, '/p')).body).proto, 'https');
    s.destroy();
  });

  test('health checks of a TLS group go over TLS', async () => {
    await new Promise((r) => setTimeout(r, 800)); // several check periods
    assert.equal(d.linesMatching(/upstream secure: server .* is down/).length, 0,
      d.linesMatching(/upstream secure/).join('\n'));
  });

  test('upstream TLS with verification: good CA works, wrong CA is a 502', async () => {
    const s = await connect(d.port);
    assert.equal(JSON.parse((await getOver(s, '/up/x')).body).url, '/up/x');
    const r = await getOver(s, '/wrong/x');
    assert.match(r.head, /^HTTP\/1\.1 502 /);
    s.destroy();
    await d.waitForLog(/upstream wrongca: server .*TLS: .*certificate verify failed/);
  });

  test('a 3 MB request body reaches a TLS upstream and a plain one byte for byte', async () => {
    // Bodies to a plain upstream are written by portico itself, to a TLS
    // one by libevent's TLS bufferevent: both must arrive whole.
    const SIZE = 3 * 1024 * 1024 + 17;
    const body = crypto.randomBytes(SIZE);
    const want = crypto.createHash('sha256').update(body).digest('hex');
    for (const p of ['/up/put', '/put']) {
      const got = await new Promise((resolve, reject) => {
        const req = https.request({ port: d.port, path: p, method: 'PUT', agent: false,
          rejectUnauthorized: false, servername: 'localhost', headers: { 'Content-Length': SIZE } }, (res) => {
          let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve({ status: res.statusCode, b }));
        });
        req.on('error', reject);
        req.setTimeout(20000, () => req.destroy(new Error(`no answer for ${p} in 20 s`)));
        req.end(body);
      });
      assert.equal(got.status, 200, `${p}: ${got.b}`);
      assert.deepEqual(JSON.parse(got.b), { len: SIZE, sum: want }, `${p}: the body arrived changed`);
    }
  });

  test('wss:// echo through portico, to plain and to TLS upstreams', async () => {
    for (const p of ['/ws', '/up/ws']) {
      const ws = new WebSocket(`wss://localhost:${d.port}${p}`,
        { rejectUnauthorized: false });
      await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
      ws.send('over tls');
      const [m] = await new Promise((r) => ws.once('message', (...a) => r(a)));
      assert.equal(m.toString(), 'over tls');
      ws.close();
    }
  });

  test('SSE over TLS', async () => {
    const events = [];
    const req = https.get({ host: '127.0.0.1', port: d.port, path: '/events', rejectUnauthorized: false,
      servername: 'localhost' }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (c) => { for (const m of c.matchAll(/data: (\d+)/g)) events.push(Number(m[1])); });
    });
    req.on('error', () => {});
    try {
      await waitFor(() => events.length >= 5, { what: '5 events over TLS' });
      assert.deepEqual(events.slice(0, 5), [1, 2, 3, 4, 5]);
    } finally { req.destroy(); }
  });
});

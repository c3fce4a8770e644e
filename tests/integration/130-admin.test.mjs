// 130-admin: the admin listener (/metrics in Prometheus text format,
// /status, /healthz, the allow-list), counters summed over workers
// through shared memory and kept across reloads, and the json access log
// with per-listener and per-route formats.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { RawConn, agentPerWorker, closeAgents, delay, httpRequest, startPortico, tempDir, waitFor,
  workerOf }
  from './lib/harness.mjs';

/**
 * A strict parser for the Prometheus text format (0.0.4): every sample
 * belongs to a family declared by # TYPE before it, names and labels are
 * well formed, values are numbers, histograms are cumulative and end in
 * +Inf equal to _count.  Returns Map(key "name{labels}" -> value).
 */
function parseProm(text) {
  assert.ok(text.endsWith('\n'), 'exposition must end with a newline');
  const types = new Map();
  const samples = new Map();
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) {
      assert.match(line.split(' ')[2], NAME, line);
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      assert.match(name, NAME, line);
      assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type), line);
      assert.ok(!types.has(name), `family ${name} declared twice`);
      types.set(name, type);
      continue;
    }
    assert.ok(!line.startsWith('#'), `stray comment: ${line}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `bad sample line: ${JSON.stringify(line)}`);
    const [, name, , labels = '', value] = m;
    if (labels) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
      let pos = 0;
      while (pos < labels.length) {
        re.lastIndex = pos;
        const l = re.exec(labels);
        assert.ok(l, `bad labels in ${line}`);
        pos = re.lastIndex;
      }
    }
    assert.ok(/^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$|^[-+]?Inf$|^NaN$/.test(value), `bad value in ${line}`);
    const family = name.replace(/_(bucket|sum|count)$/, '');
    const declared = types.get(name) ?? (types.get(family) === 'histogram' ? 'histogram' : undefined);
    assert.ok(declared, `sample ${name} before its # TYPE`);
    const key = `${name}{${labels}}`;
    assert.ok(!samples.has(key), `duplicate sample ${key}`);
    samples.set(key, Number(value));
  }
  // histograms: cumulative buckets, +Inf == _count
  for (const [name, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map();
    for (const [k, v] of samples) {
      if (!k.startsWith(`${name}_bucket{`)) continue;
      const base = k.replace(/,?le="[^"]*"/, '');
      const le = /le="([^"]*)"/.exec(k)[1];
      if (!series.has(base)) series.set(base, []);
      series.get(base).push([le === '+Inf' ? Infinity : Number(le), v]);
    }
    for (const [base, buckets] of series) {
      buckets.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < buckets.length; i++)
        assert.ok(buckets[i][1] >= buckets[i - 1][1], `${base} buckets not cumulative`);
      assert.equal(buckets.at(-1)[0], Infinity, `${base} lacks +Inf`);
      const count = samples.get(base.replace('_bucket{', '_count{'));
      assert.equal(buckets.at(-1)[1], count, `${base}: +Inf != _count`);
    }
  }
  return samples;
}

/** The bound port of the listener on this loopback address. */
const portAt = (d, ip) => Number(d.addresses.find((a) => a.startsWith(`${ip}:`)).split(':')[1]);

async function metrics(d, agent) {
  const r = await httpRequest(portAt(d, '127.0.0.2'), { path: '/metrics', host: '127.0.0.2', agent });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  return parseProm(r.body);
}

/**
 * portico_connections_open read over one kept-alive admin connection,
 * counted in every look: a new connection per look would race the close
 * of the one before (a worker writes the answer, then closes and counts
 * the close, while the other worker may already answer the next look).
 * Call close() when done.
 */
function connectionsGauge(d) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    read: async () => (await metrics(d, agent)).get('portico_connections_open{}'),
    close: () => agent.destroy(),
  };
}

describe('admin listener', () => {
  let up, d, dir;
  const config = (body) => ({
    workers: 2,
    access_log: { path: path.join(dir, 'access.log'), format: 'json' },
    listeners: [{ listen: '127.0.0.1:0' }, { listen: '127.0.0.3:0', access_log: { format: 'combined' } }],
    admin: { listen: '127.0.0.2:0' },
    upstreams: { app: { servers: [{ address: `127.0.0.1:${up.address().port}` }] } },
    routes: [
      { match: { path_prefix: '/api' }, upstream: 'app' },
      { match: { path_prefix: '/quiet' }, access_log: { format: 'off' }, respond: { status: 200, body: 'q\n' } },
      { match: { path_prefix: '/' }, respond: { status: 200, body } },
    ],
  });
  before(async () => {
    dir = tempDir();
    up = http.createServer((req, res) => setTimeout(() => res.end('up\n'), 5));
    await new Promise((r) => up.listen(0, '127.0.0.1', r));
    d = await startPortico({ config: config('v1\n') });
  });
  after(async () => { await d?.stop(); up?.close(); });

  test('/metrics parses strictly and moves with requests over all workers', async () => {
    const agents = await agentPerWorker(d);
    assert.equal(agents.length, 2);
    const m0 = await metrics(d);
    const key = 'portico_requests_total{route="* /",code="2xx"}';
    const before = m0.get(key) ?? 0;
    try {
      for (let i = 0; i < 20; i++) // both workers serve, alternately
        assert.equal((await httpRequest(d.port, { path: `/p${i}`, agent: agents[i % 2] })).status, 200);
    } finally { closeAgents(agents); }
    for (let i = 0; i < 5; i++)
      assert.equal((await httpRequest(d.port, { path: `/api/${i}` })).status, 200);
    const m1 = await metrics(d);
    assert.equal(m1.get(key) - before, 20);
    assert.equal(m1.get('portico_requests_total{route="* /api",code="2xx"}'), 5);
    const srv = `upstream="app",server="127.0.0.1:${up.address().port}"`;
    assert.equal(m1.get(`portico_upstream_response_seconds_count{${srv}}`), 5);
    assert.ok(m1.get(`portico_upstream_response_seconds_sum{${srv}}`) > 0);
    assert.equal(m1.get(`portico_upstream_up{${srv}}`), 1);
    // the five /api requests came on connections of their own
    assert.ok(m1.get('portico_connections_total{}') - m0.get('portico_connections_total{}') >= 5);
    assert.ok(m1.get('portico_bytes_sent_total{}') > m0.get('portico_bytes_sent_total{}'));
    assert.equal(m1.get('portico_workers{}'), 2);
  });

  test('keep-alive connections sleep between requests and wake for the next', async (t) => {
    // More connections than a worker keeps spare, each idle between its
    // requests (asleep), then woken by a request, by two pipelined ones
    // and by a head that comes in two parts.
    const gauge = connectionsGauge(d);
    t.after(() => gauge.close());
    const open = gauge.read;
    const before = await open();
    const conns = await Promise.all(Array.from({ length: 300 }, () => RawConn.open(d.port)));
    const get = (i) => `GET /s${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
    try {
      const rounds = [(i) => [get(i)], (i) => [get(i) + get(i + 1)],
        (i) => [get(i).slice(0, 9), get(i).slice(9)]];
      for (const parts of rounds) {
        await delay(100);
        await Promise.all(conns.map(async (c, i) => {
          for (const [k, p] of parts(i).entries()) {
            if (k) await delay(30);
            await c.write(p);
          }
        }));
        const want = parts(0).join('').split('GET').length - 1;
        for (const c of conns) {
          const rs = await c.read(want);
          assert.equal(rs.length, want);
          for (const r of rs) {
            assert.equal(r.status, 200);
            assert.equal(r.body.toString(), 'v1\n');
          }
        }
      }
      assert.equal(await open(), before + 300);
    } finally {
      for (const c of conns) c.destroy();
    }
    await waitFor(async () => (await open()) === before, { what: 'connections_open back' });
  });

  test('counters survive a reload', async () => {
    const key = 'portico_requests_total{route="* /",code="2xx"}';
    const before = (await metrics(d)).get(key);
    const r = await d.reload(config('v2\n'));
    assert.ok(r.ok, r.lines.join('\n'));
    assert.equal((await httpRequest(d.port, { path: '/after' })).body, 'v2\n');
    const m = await metrics(d);
    assert.equal(m.get(key), before + 1);
    assert.equal(m.get('portico_reloads_total{result="ok"}'), 1);
    assert.equal(m.get('portico_config_generation{}'), 2);
  });

  test('/status is JSON, /healthz is ok, other paths 404, POST 405', async () => {
    const s = await httpRequest(portAt(d, '127.0.0.2'), { path: '/status', host: '127.0.0.2' });
    const j = JSON.parse(s.body);
    assert.equal(j.workers, 2);
    assert.equal(j.upstreams[0].name, 'app');
    assert.equal(j.upstreams[0].servers[0].up, true);
    assert.ok(j.requests_total > 0);
    assert.equal((await httpRequest(portAt(d, '127.0.0.2'), { path: '/healthz', host: '127.0.0.2' })).body, 'ok\n');
    assert.equal((await httpRequest(portAt(d, '127.0.0.2'), { path: '/nope', host: '127.0.0.2' })).status, 404);
    assert.equal((await httpRequest(portAt(d, '127.0.0.2'), { path: '/metrics', method: 'POST', host: '127.0.0.2' })).status, 405);
  });

  test('json access log, per-listener combined, per-route off', async () => {
    await httpRequest(d.port, { path: '/j?x="y"', headers: { 'X-Request-Id': 'req-42' } });
    await httpRequest(d.port, { path: '/quiet' });
    await httpRequest(portAt(d, '127.0.0.3'), { path: '/combined', host: '127.0.0.3' });
    const file = path.join(dir, 'access.log');
    await waitFor(() => fs.readFileSync(file, 'utf8').includes('/combined'), { what: 'the combined line' });
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    assert.ok(!lines.some((l) => l.includes('/quiet')), 'a route with format off was logged');
    const j = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const mine = j.find((e) => e.request_id === 'req-42');
    assert.ok(mine, 'no json line with the request id');
    assert.equal(mine.path, '/j?x="y"');
    assert.equal(mine.status, 200);
    assert.equal(mine.method, 'GET');
    for (const f of ['time', 'client', 'bytes', 'request_time', 'upstream', 'upstream_time', 'cache'])
      assert.ok(f in mine, `missing ${f}`);
    const up = j.find((e) => e.upstream);
    assert.match(up.upstream, /^127\.0\.0\.1:\d+$/);
    assert.equal(typeof up.upstream_time, 'number');
    assert.ok(lines.some((l) => /^127\.0\.0\.1 - - \[.*\] "GET \/combined HTTP\/1\.1" 200 /.test(l)));
  });
});

test('admin.allow keeps other clients out with 403', async () => {
  const d = await startPortico({ config: {
    workers: 1, listeners: [{ listen: '127.0.0.1:0' }],
    admin: { listen: '127.0.0.2:0', allow: ['10.0.0.0/8', '::1'] },
    routes: [{ respond: { status: 200, body: 'ok\n' } }],
  } });
  try {
    const r = await httpRequest(portAt(d, '127.0.0.2'), { path: '/metrics', host: '127.0.0.2' });
    assert.equal(r.status, 403);
  } finally { await d.stop(); }
});

test('a listener that logs while the global format is off still gets its file', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'only-public.log');
  const d = await startPortico({ config: {
    workers: 1, access_log: { path: file, format: 'off' },
    listeners: [{ listen: '127.0.0.1:0', access_log: { format: 'json' } }, { listen: '127.0.0.3:0' }],
    routes: [{ respond: { status: 200, body: 'ok\n' } }],
  } });
  try {
    await httpRequest(d.port, { path: '/logged' });
    await httpRequest(portAt(d, '127.0.0.3'), { path: '/silent', host: '127.0.0.3' });
    await waitFor(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('/logged'),
      { what: 'the json line' });
    await new Promise((r) => setTimeout(r, 200));
    const text = fs.readFileSync(file, 'utf8');
    assert.equal(JSON.parse(text.trim().split('\n')[0]).path, '/logged');
    assert.ok(!text.includes('/silent'));
  } finally { await d.stop(); }
});

test('connections of a worker killed with them open leave portico_connections_open',
  async (t) => {
    const d = await startPortico({ config: {
      workers: 2,
      error_log: { level: 'info' },
      listeners: [{ listen: '127.0.0.1:0' }],
      admin: { listen: '127.0.0.2:0' },
      routes: [{ match: { path_prefix: '/' }, respond: { status: 200, body: 'ok\n' } }],
    } });
    t.after(() => d.stop());
    await d.waitWorkers(2);
    const reader = connectionsGauge(d);
    t.after(() => reader.close());
    const gauge = reader.read;
    const base = await gauge(); // the reader's own connection
    const conns = [];
    t.after(() => conns.forEach((c) => c.destroy()));
    for (let i = 0; i < 6; i++) {
      const c = await RawConn.open(d.port);
      conns.push(c);
      await c.write('GET / HTTP/1.1\r\nHost: a.example\r\n\r\n');
      assert.equal((await c.read(1))[0].status, 200);
    }
    assert.equal(await gauge(), base + 6);
    const holders = new Set(conns.map((c) => workerOf(d, c.sock.localPort)));
    assert.ok(!holders.has(null));
    for (const pid of holders) process.kill(pid, 'SIGKILL');
    for (const c of conns) assert.ok(await c.waitClosed(), 'the connection died with its worker');
    await d.waitWorkers(2);
    // The master takes a dead worker's count off when it reaps it.
    await waitFor(async () => (await gauge()) === base,
      { what: `portico_connections_open back to ${base}` });
    assert.equal((await metrics(d)).get('portico_workers{}'), 2);
  });

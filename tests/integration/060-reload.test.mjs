// 060-reload: SIGHUP swaps the configuration in place.  New listeners
// open, old ones keep their socket, a broken file changes nothing, open
// connections live on, the worker count follows the file, and no request
// fails while reloads happen under load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { baseConfig, delay, httpRequest, keepAliveAgent, parseOne, rawRequest,
  RawConn, startPortico, waitFor } from './lib/harness.mjs';

const H = 'Host: a.example\r\n';
const GET_CLOSE = `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`;

const withBody = (body, extra = {}) => baseConfig({
  routes: [{ match: { path_prefix: '/' },
    respond: { status: 200, body, headers: { 'X-Body': body } } }],
  ...extra,
});

async function bodyAt(port, host = '127.0.0.1') {
  const res = await rawRequest(port, GET_CLOSE, { host, timeout: 10000 });
  const r = parseOne(res.data);
  assert.equal(r.status, 200);
  return r.body.toString();
}

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('reload adds a listener and changes the response', async (t) => {
  const d = await startPortico({ config: withBody('v1') });
  t.after(() => d.stop());
  const oldPort = d.port;
  assert.equal(await bodyAt(oldPort), 'v1');

  const r = await d.reload(withBody('v2', {
    listeners: [{ listen: '127.0.0.1:0' }, { listen: '127.0.0.2:0' }],
  }));
  assert.ok(r.ok, r.lines.join('\n'));
  assert.ok(r.lines.some((l) => l.includes(`SIGHUP: reloading ${d.confPath}`)), r.lines.join('\n'));
  assert.ok(r.lines.some((l) => /generation 2 sent to 2 workers/.test(l)), r.lines.join('\n'));
  assert.match(r.line, /reload complete: generation 2 running in 2 workers/);
  assert.ok(r.lines.some((l) => /listening on 127\.0\.0\.2:\d+ \(listen: "127\.0\.0\.2:0"\)/.test(l)),
    'the new listener is announced');
  assert.equal(d.linesMatching(/listening on 127\.0\.0\.1:/).length, 1,
    'the unchanged listener keeps its socket (not reopened)');

  const added = d.addressOf('127.0.0.2');
  assert.ok(added, `no 127.0.0.2 listener in ${d.addresses}`);
  assert.equal(await bodyAt(added.port, added.host), 'v2', 'new listener answers');
  assert.equal(await bodyAt(oldPort), 'v2', 'old listener answers with the new config');
});

test('reload that drops a listener stops accepting on it', async (t) => {
  const d = await startPortico({ config: withBody('v1', {
    listeners: [{ listen: '127.0.0.1:0' }, { listen: '127.0.0.3:0' }],
  }) });
  t.after(() => d.stop());
  const dropped = d.addressOf('127.0.0.3');
  assert.equal(await bodyAt(dropped.port, dropped.host), 'v1');

  const r = await d.reload(withBody('v2'));
  assert.ok(r.ok, r.lines.join('\n'));
  assert.ok(r.lines.some((l) => /no longer listening on 127\.0\.0\.3:0/.test(l)), r.lines.join('\n'));
  // A dropped listener must refuse connects, not take them into a
  // backlog nobody accepts from.
  const probe = () => new Promise((resolve) => {
    const s = net.connect({ port: dropped.port, host: dropped.host });
    const timer = setTimeout(() => { s.destroy(); resolve('hangs'); }, 2000);
    s.on('connect', () => s.write(GET_CLOSE));
    s.on('data', () => { clearTimeout(timer); s.destroy(); resolve('served'); });
    s.on('error', (e) => { clearTimeout(timer); resolve(e.code); });
    s.on('close', () => { clearTimeout(timer); resolve('closed'); });
  });
  let last;
  await waitFor(async () => (last = await probe()) === 'ECONNREFUSED',
    { timeout: 10000, interval: 250, what: `connects to ${dropped.host}:${dropped.port} to be refused` })
    .catch((e) => assert.fail(`${e.message}; last probe: ${last}`));
  assert.equal(await bodyAt(d.port), 'v2');
});

test('a broken config on reload is rejected with file:line:col; the old one serves on', async (t) => {
  const d = await startPortico({ config: withBody('v1') });
  t.after(() => d.stop());
  const broken = [
    'workers: 2',                         // 1
    'listeners:',                         // 2
    '  - listen: "127.0.0.1:0"',          // 3
    'routes:',                            // 4
    '  - match: { path_prefix: "/" }',    // 5
    '    respond: { status: 200, body: "v2" }',
    'timeout:',                           // 7  unknown key (timeouts)
    '  keepalive: 5s',
    '',
  ].join('\n');
  const r = await d.reload(broken);
  assert.equal(r.ok, false, r.lines.join('\n'));
  const all = r.lines.join('\n');
  assert.match(all, new RegExp(`master error: reload rejected: ${esc(d.confPath)}:7:1: error: .*timeout`));
  assert.match(r.line, new RegExp(`reload rejected: 1 error \\(${esc(d.confPath)}\\); still serving the current configuration`));
  assert.equal(await bodyAt(d.port), 'v1');
  assert.equal(d.workerPids().length, 2);

  // A YAML syntax error is rejected the same way.
  const r2 = await d.reload('workers: 2\nlisteners: [ { listen: "127.0.0.1:0" }\nroutes: {\n');
  assert.equal(r2.ok, false, r2.lines.join('\n'));
  assert.ok(r2.lines.some((l) => new RegExp(`reload rejected: ${esc(d.confPath)}:\\d+:\\d+: error: `).test(l)),
    r2.lines.join('\n'));
  assert.equal(await bodyAt(d.port), 'v1');

  // Fixed again: the next reload goes through.
  const r3 = await d.reload(withBody('v3'));
  assert.ok(r3.ok, r3.lines.join('\n'));
  assert.equal(await bodyAt(d.port), 'v3');
});

test('a reload whose listener cannot be opened is rolled back', async (t) => {
  const d = await startPortico({ config: withBody('v1') });
  t.after(() => d.stop());
  // A port already taken by someone else (us).
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(0, '127.0.0.4', r));
  t.after(() => blocker.close());
  const taken = `127.0.0.4:${blocker.address().port}`;
  const r = await d.reload(withBody('v2', {
    listeners: [{ listen: '127.0.0.1:0' }, { listen: taken }],
  }));
  assert.equal(r.ok, false, r.lines.join('\n'));
  assert.ok(r.lines.some((l) => l.includes(`cannot listen on "${taken}"`)), r.lines.join('\n'));
  assert.match(r.line, /still serving the current configuration/);
  assert.equal(await bodyAt(d.port), 'v1');
  const r2 = await d.reload(withBody('v2'));
  assert.ok(r2.ok);
  assert.equal(await bodyAt(d.port), 'v2');
});

test('keep-alive connections opened before a reload work after it', async (t) => {
  const d = await startPortico({ config: withBody('v1', {
    timeouts: { client_header: '60s', keepalive: '60s' },
  }) });
  t.after(() => d.stop());
  const idle = await RawConn.open(d.port);
  const mid = await RawConn.open(d.port);
  t.after(() => { idle.destroy(); mid.destroy(); });

  await idle.write(`GET / HTTP/1.1\r\n${H}\r\n`);
  assert.equal((await idle.read(1))[0].body.toString(), 'v1');
  await mid.write(`GET / HTTP/1.1\r\n${H}\r\n`);
  assert.equal((await mid.read(1))[0].body.toString(), 'v1');
  // half a head, then the reload, then the rest
  await mid.write('GET /mid HTTP/1.1\r\nHo');

  const r = await d.reload(withBody('v2', { timeouts: { client_header: '60s', keepalive: '60s' } }));
  assert.ok(r.ok, r.lines.join('\n'));

  await mid.write(`st: a.example\r\nX-After: reload\r\n\r\n`);
  const [m] = await mid.read(1);
  assert.equal(m.status, 200, 'the request that straddled the reload is answered');
  assert.ok(['v1', 'v2'].includes(m.body.toString()), `body ${m.body}`);
  t.diagnostic(`request straddling the reload got ${m.body}`);

  await idle.write(`GET / HTTP/1.1\r\n${H}\r\n`);
  const [i] = await idle.read(1);
  assert.equal(i.status, 200);
  assert.equal(i.body.toString(), 'v2', 'a new request on an old connection uses the new config');
  assert.equal(idle.closed, false);
  assert.equal(mid.closed, false);
  // and again, to be sure the connections are healthy
  await mid.write(`GET / HTTP/1.1\r\n${H}\r\n`);
  assert.equal((await mid.read(1))[0].body.toString(), 'v2');
});

test('workers: 3 -> 1 retires two workers; 1 -> 2 adds one', async (t) => {
  const d = await startPortico({ config: withBody('v1', { workers: 3 }) });
  t.after(() => d.stop());
  const three = await d.waitWorkers(3);

  const r = await d.reload(withBody('v2', { workers: 1 }));
  assert.ok(r.ok, r.lines.join('\n'));
  const one = await d.waitWorkers(1);
  assert.ok(three.includes(one[0]), 'the surviving worker is one of the old ones (reload in place)');
  await d.waitForLog(/retired worker \(pid \d+\) exited with status 0/);
  await waitFor(() => d.linesMatching(/retired worker \(pid \d+\) exited with status 0/).length === 2,
    { what: 'two retired workers logged' });
  assert.equal(await bodyAt(d.port), 'v2');

  const r2 = await d.reload(withBody('v3', { workers: 2 }));
  assert.ok(r2.ok, r2.lines.join('\n'));
  assert.match(r2.line, /running in 2 workers/);
  const two = await d.waitWorkers(2);
  assert.ok(two.includes(one[0]));
  // settle: still exactly 2 a moment later (nothing re-forked twice)
  await delay(300);
  assert.equal(d.workerPids().length, 2);
  assert.equal(await bodyAt(d.port), 'v3');
});

test('workers: 3 -> 1 with requests in flight: every one is answered', async (t) => {
  const d = await startPortico({ config: withBody('v1', {
    workers: 3, timeouts: { client_header: '60s', keepalive: '60s', shutdown_grace: '20s' },
  }) });
  t.after(() => d.stop());
  await d.waitWorkers(3);
  // Enough connections that some land on the workers that retire.
  const conns = await Promise.all(Array.from({ length: 9 }, () => RawConn.open(d.port)));
  t.after(() => conns.forEach((c) => c.destroy()));
  for (const c of conns) {
    await c.write(`GET / HTTP/1.1\r\n${H}\r\n`);
    assert.equal((await c.read(1))[0].body.toString(), 'v1');
    await c.write('GET /in-flight HTTP/1.1\r\n'); // half a head
  }
  await delay(300); // setup: let the workers read the half heads

  const r = await d.reload(withBody('v2', {
    workers: 1, timeouts: { client_header: '60s', keepalive: '60s', shutdown_grace: '20s' },
  }));
  assert.ok(r.ok, r.lines.join('\n'));
  for (const c of conns) await c.write(`${H}\r\n`);
  const answers = await Promise.all(conns.map((c) => c.read(1).then(([x]) => x)));
  const closing = answers.filter((a) => /close/i.test(a.headers.connection ?? '')).length;
  t.diagnostic(`${answers.length} in-flight requests answered, ${closing} with Connection: close`);
  for (const a of answers) assert.equal(a.status, 200);
  await d.waitWorkers(1);
  assert.equal(await bodyAt(d.port), 'v2');
});

test('reload under load: 8 keep-alive clients, 20 SIGHUPs, zero failures', async (t) => {
  const WORKERS = 2;
  const CLIENTS = 8;
  const RELOADS = 20;
  const cfg = (n) => withBody(`gen-${n % 2}`, { workers: WORKERS });
  const d = await startPortico({ config: cfg(0) });
  t.after(() => d.stop());
  await d.waitWorkers(WORKERS);

  let stop = false;
  let requests = 0;
  const failures = [];
  const client = async (id) => {
    const agent = keepAliveAgent(1);
    const ports = new Set();
    try {
      while (!stop) {
        try {
          const r = await httpRequest(d.port, { path: `/c${id}`, agent,
            headers: { Host: 'a.example' }, timeout: 10000 });
          requests++;
          ports.add(r.localPort);
          if (r.status !== 200 || !/^gen-[01]$/.test(r.body))
            failures.push(`client ${id}: ${r.status} ${r.body}`);
        } catch (e) {
          requests++;
          failures.push(`client ${id}: ${e.code || ''} ${e.message}`);
        }
      }
    } finally {
      agent.destroy();
    }
    return ports.size;
  };
  const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));

  let reloads = 0;
  const rejected = [];
  try {
    await waitFor(() => requests >= CLIENTS * 5, { what: 'clients to get going' });
    for (let i = 1; i <= RELOADS; i++) {
      const r = await d.reload(cfg(i));
      if (r.ok) reloads++;
      else rejected.push(r.lines.join('\n'));
      await delay(100); // let traffic run on each generation
    }
  } finally {
    stop = true;
  }
  const socketsPerClient = await Promise.all(clients);
  const workers = await d.waitWorkers(WORKERS).then((p) => p.length, () => d.workerPids().length);
  const summary = `requests=${requests} failures=${failures.length} reloads=${reloads}/${RELOADS} ` +
    `workers=${workers} connections-per-client=${socketsPerClient.join(',')}`;
  console.log(`# reload under load: ${summary}`);
  t.diagnostic(summary);

  assert.deepEqual(rejected, []);
  assert.equal(reloads, RELOADS);
  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} failed requests`);
  assert.equal(workers, WORKERS);
  assert.ok(requests > CLIENTS * RELOADS, `only ${requests} requests made`);
  assert.ok(socketsPerClient.every((n) => n === 1), 'no keep-alive connection was cut by a reload');
  assert.equal(d.linesMatching(/killed by signal|refused generation|cannot send generation/).length, 0);
  assert.equal(await bodyAt(d.port), `gen-${RELOADS % 2}`);
});

// 055-accept: a new connection wakes one worker, not every worker.
//
// Every worker's epoll set holds the shared listening socket.  portico
// registers it there with EPOLLEXCLUSIVE (listener_wake_one), so that the
// kernel wakes one sleeping worker per connection.  These tests read the
// registration out of each worker's /proc/PID/fdinfo, after start, after
// a reload and after accepting paused at max_connections, and count how
// often each worker wakes while connections arrive one at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { baseConfig, delay, fdsOf, parseOne, rawRequest, socketFds, startPortico, tcpSockets,
  waitFor, RawConn } from './lib/harness.mjs';

const EPOLLEXCLUSIVE = 1 << 28;
const REQ = 'GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n';
const REQ_KEEP = 'GET / HTTP/1.1\r\nHost: a.example\r\n\r\n';

/** Inodes of the TCP sockets listening on port. */
function listeningInodes(port) {
  return new Set(tcpSockets()
    .filter((s) => s.state === '0A' && s.localPort === port).map((s) => s.inode));
}

/** Where pid's epoll sets and listening sockets on port are. */
function listenerPlaces(pid, port) {
  return {
    pid,
    epolls: fdsOf(pid).filter(({ target }) => target === 'anon_inode:[eventpoll]')
      .map(({ fd }) => fd),
    listenFds: socketFds(pid, listeningInodes(port)),
  };
}

/**
 * How pid's epoll sets hold its listening sockets on port: one entry per
 * registration, {fd, events}.  An empty list: the worker listens nowhere.
 * places: listenerPlaces(pid, port), when read once beforehand.
 */
function listenerRegistrations(pid, port, places = listenerPlaces(pid, port)) {
  const regs = [];
  for (const ep of places.epolls) {
    const info = fs.readFileSync(`/proc/${pid}/fdinfo/${ep}`, 'utf8');
    for (const m of info.matchAll(/^tfd:\s+(\d+)\s+events:\s+([0-9a-f]+)/gm))
      if (places.listenFds.has(Number(m[1])))
        regs.push({ fd: Number(m[1]), events: parseInt(m[2], 16) });
  }
  return regs;
}

/**
 * Wait until n workers run and each has its listener in an epoll set;
 * returns their pids.  The master says "ready" once it has forked them,
 * which on a loaded machine can be well before a worker has made its
 * event loop: read then, a worker looks as if it never listens.
 */
async function waitListening(d, n) {
  const pids = await d.waitWorkers(n);
  await waitFor(() => pids.every((p) => listenerRegistrations(p, d.port).length > 0),
    { what: `${n} workers listening` });
  return pids;
}

function assertExclusive(d, what) {
  const pids = d.workerPids();
  assert.ok(pids.length > 0);
  for (const pid of pids) {
    const regs = listenerRegistrations(pid, d.port);
    assert.equal(regs.length, 1,
      `${what}: worker ${pid} holds the listener once: ${JSON.stringify(regs)}`);
    assert.ok(regs[0].events & EPOLLEXCLUSIVE,
      `${what}: worker ${pid} registers the listener with EPOLLEXCLUSIVE ` +
      `(events ${regs[0].events.toString(16)})`);
  }
}

function voluntarySwitches(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)[1]);
}

function oneConnection(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(REQ));
    let data = '';
    s.setEncoding('latin1');
    s.on('data', (c) => { data += c; });
    s.on('end', () => resolve(parseOne(Buffer.from(data, 'latin1')).status));
    s.on('error', reject);
  });
}

test('every worker registers the listening socket with EPOLLEXCLUSIVE, ' +
     'and again after a reload', async (t) => {
  const config = baseConfig({ workers: 3 });
  const d = await startPortico({ config });
  t.after(() => d.stop());
  await waitListening(d, 3);
  assertExclusive(d, 'at start');

  // A reload gives the workers kept a new generation, with its own
  // descriptors for the listening sockets, and stops the third worker.
  const before = d.workerPids().map((p) => listenerRegistrations(p, d.port)[0].fd);
  const r = await d.reload({ ...config, workers: 2 });
  assert.ok(r.ok, r.line);
  await d.waitWorkers(2);
  await waitFor(() => d.workerPids().every((p) => {
    const regs = listenerRegistrations(p, d.port);
    return regs.length === 1 && !before.includes(regs[0].fd);
  }), { what: 'the new generation listening in both workers' });
  assertExclusive(d, 'after a reload');
  assert.equal(await oneConnection(d.port), 200);
});

test('accepting paused at max_connections resumes with EPOLLEXCLUSIVE',
  async (t) => {
    const d = await startPortico({
      config: baseConfig({
        workers: 1,
        limits: { max_connections: 1 },
        timeouts: { client_header: '30s', keepalive: '60s' },
      }),
    });
    t.after(() => d.stop());
    const [pid] = await d.waitWorkers(1);
    const a = await RawConn.open(d.port);
    try {
      await a.write('GET / HTTP/1.1\r\nHost: a.example\r\n\r\n');
      assert.equal((await a.read(1))[0].status, 200);
      await d.waitForLog(/max_connections \(1\) reached; pausing accept/);
      assert.deepEqual(listenerRegistrations(pid, d.port), [],
        'paused: the listener is out of the epoll set');
    } finally {
      a.destroy();
    }
    await waitFor(() => listenerRegistrations(pid, d.port).length === 1,
      { what: 'the listener back in the epoll set' });
    assertExclusive(d, 'after the pause');
    const res = await rawRequest(d.port, REQ, { timeout: 10000 });
    assert.equal(parseOne(res.data).status, 200);
  });

test('connections arriving one at a time wake one worker each, not all',
  async (t) => {
    const WORKERS = 3;
    const N = 150;
    const d = await startPortico({ config: baseConfig({ workers: WORKERS }) });
    t.after(() => d.stop());
    const pids = await waitListening(d, WORKERS);
    assert.equal(await oneConnection(d.port), 200);

    const s0 = pids.map(voluntarySwitches);
    for (let i = 0; i < N; i++) assert.equal(await oneConnection(d.port), 200);
    const perConn = pids.map((p, i) => (voluntarySwitches(p) - s0[i]) / N);
    t.diagnostic(`wake-ups per connection, by worker: ${
      perConn.map((x) => x.toFixed(2)).join(' ')}`);

    // Woken for every connection, a worker sleeps at least once per
    // connection whether it accepted it or not.  One wake-up per
    // connection leaves the workers that were not woken near zero.
    const busy = perConn.filter((x) => x >= 0.5);
    assert.ok(busy.length < WORKERS,
      `every worker woke for most connections: ${perConn.join(' ')}`);
    const total = perConn.reduce((a, b) => a + b, 0);
    assert.ok(total < WORKERS,
      `${total.toFixed(2)} wake-ups per connection in all, for ${WORKERS} workers`);
  });

/** Client connections to port that pid holds (established, server side). */
function connectionsHeld(pid, port) {
  return socketFds(pid, new Set(tcpSockets()
    .filter((x) => x.state === '01' && x.localPort === port).map((x) => x.inode))).size;
}

test('long-lived connections opened one at a time are shared among the ' +
     'workers', async (t) => {
  // The kernel wakes the worker that waited first; without the share
  // check that worker took all of them (0 and 200 of 200, measured).
  const WORKERS = 2;
  const N = 120;
  const d = await startPortico({ config: baseConfig({ workers: WORKERS }) });
  t.after(() => d.stop());
  const pids = await waitListening(d, WORKERS);
  const conns = [];
  t.after(() => conns.forEach((c) => c.destroy()));
  for (let i = 0; i < N; i++) {
    const c = await RawConn.open(d.port);
    conns.push(c);
    await c.write('GET / HTTP/1.1\r\nHost: a.example\r\n\r\n');
    assert.equal((await c.read(1))[0].status, 200);
  }
  const held = pids.map((p) => connectionsHeld(p, d.port));
  t.diagnostic(`connections held, by worker: ${held.join(' ')}`);
  assert.equal(held.reduce((a, b) => a + b, 0), N);
  // A worker stops accepting once it holds more than the mean by
  // 8 + mean/8 (worker.c, worker_over_share).  One worker at a time
  // does so: one over its share while the other sheds goes on accepting
  // until the other's next check (SHED_CHECK_MS, 10 ms), and a fast
  // machine opens several connections in that time (77 of 120 seen
  // against a bound of 76).  Twice the margin still tells the share
  // check from none (0 and 120).
  const mean = N / WORKERS;
  const most = mean + 2 * (8 + Math.floor(mean / 8));
  for (const h of held)
    assert.ok(h <= most && h >= N - most * (WORKERS - 1),
      `connections by worker ${held.join(' ')}: none over ${most}`);
});

test('while a worker is over its share, another always accepts', async (t) => {
  // A worker over its share stops accepting, one at a time.  When any
  // could stop, two did on counts gone stale while the other accepted a
  // burst, and for up to a check period nobody accepted: seen once in
  // each of three runs of this sequence.
  const WORKERS = 2;
  const d = await startPortico({ config: baseConfig({ workers: WORKERS }) });
  t.after(() => d.stop());
  const pids = await waitListening(d, WORKERS);
  // Where each worker's epoll sets and listening socket are: read once,
  // so that a sample is quick next to a connection.
  const places = pids.map((pid) => listenerPlaces(pid, d.port));
  const accepting = (pl) => listenerRegistrations(pl.pid, d.port, pl).length > 0;
  const conns = [];
  t.after(() => conns.forEach((c) => c.destroy()));
  const open = () => new Promise((resolve, reject) => {
    const c = net.connect(d.port, '127.0.0.1', () => c.write(REQ_KEEP));
    conns.push(c);
    // the status line comes in the first bytes
    c.once('data', (b) => resolve(Number(/^HTTP\/1\.1 (\d{3}) /.exec(b.toString('latin1'))?.[1])));
    c.once('error', reject);
  });
  // The epoll sets are read one after the other: a worker taking up
  // listening after its set was read while the other stops could look
  // like nobody for an instant.  A state with nobody accepting lasted
  // until a check (tens of ms): count it when it is still there 3 ms on.
  let nobody = 0, samples = 0;
  const sample = async () => {
    samples++;
    for (let i = 0; i < 3; i++) {
      if (places.some(accepting)) return;
      await delay(1);
    }
    nobody++;
  };
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 20; i++) {
      await sample();
      assert.equal(await open(), 200);
    }
    await sample();
    for (const status of await Promise.all(Array.from({ length: 30 }, open)))
      assert.equal(status, 200);
    await sample();
  }
  assert.equal(conns.length, 200);
  assert.equal(nobody, 0, `no worker accepting in ${nobody} of ${samples} samples`);
});

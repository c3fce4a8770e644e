// 070-signals: SIGQUIT stops gracefully (a request in flight finishes),
// SIGTERM/SIGINT stop fast, SIGUSR1 reopens the log files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { agentPerWorker, baseConfig, closeAgents, delay, httpRequest, parseOne, pidAlive,
  rawRequest, RawConn, startPortico, tempDir, waitFor } from './lib/harness.mjs';

const H = 'Host: a.example\r\n';

test('SIGQUIT: a request in flight is finished with Connection: close, then exit 0', async (t) => {
  const d = await startPortico({ config: baseConfig({
    workers: 1,
    timeouts: { client_header: '60s', keepalive: '60s', shutdown_grace: '20s' },
  }) });
  t.after(() => d.stop());
  const [worker] = await d.waitWorkers(1);
  const c = await RawConn.open(d.port);
  t.after(() => c.destroy());

  // A first exchange proves the worker holds the connection.
  await c.write(`GET / HTTP/1.1\r\n${H}\r\n`);
  assert.equal((await c.read(1))[0].status, 200);
  // Half of the next head; give the worker a moment to read it (setup
  // only: the "1 connections open" check below says whether it did).
  await c.write(`GET /in-flight HTTP/1.1\r\n${H}`);
  await delay(500);

  const from = d.logs.length;
  d.signal('SIGQUIT');
  await d.waitForLog(/master notice: graceful stop: 1 workers/, undefined, from);
  const g = await d.waitForLog(/worker 0 info: graceful stop \(asked by the master\): (\d+) connections open/,
    undefined, from);
  assert.equal(g[1], '1', 'the connection with a partial request is kept');
  assert.equal(d.exit, null, 'the daemon waits for the request in flight');
  // New connections are no longer served.
  const late = await rawRequest(d.port, `GET / HTTP/1.1\r\n${H}\r\n`, { timeout: 1000 });
  assert.equal(late.data.length, 0, 'a connection made after SIGQUIT is not served');

  await c.write('\r\n');
  const [r] = await c.read(1);
  assert.equal(r.status, 200);
  assert.match(r.headers.connection ?? '', /^close$/i);
  assert.ok(await c.waitClosed(), 'closed after the last response');

  const exit = await d.waitExit(15000);
  assert.equal(exit.code, 0, d.logs.slice(from).join('\n'));
  assert.ok(d.logs.some((l) => /master notice: stopped$/.test(l)));
  assert.ok(!pidAlive(worker));
});

// Between requests a connection dozes (one of the 256 answered last) or
// sleeps (older ones): a graceful stop must treat both alike.
for (const [kind, newer] of [['dozing', 0], ['asleep', 260]]) {
  test(`SIGQUIT: an idle keep-alive connection closes, one whose next request already came is answered first (${kind})`, async (t) => {
    const d = await startPortico({ config: baseConfig({
      workers: 1,
      timeouts: { client_header: '60s', keepalive: '60s', shutdown_grace: '20s' },
    }) });
    t.after(() => d.stop());
    const [worker] = await d.waitWorkers(1);
    const busy = await RawConn.open(d.port);
    const idle = await RawConn.open(d.port);
    t.after(() => { busy.destroy(); idle.destroy(); });
    const others = await Promise.all(Array.from({ length: newer }, () => RawConn.open(d.port)));
    t.after(() => { for (const c of others) c.destroy(); });
    for (const c of [busy, idle, ...others]) { // idle between requests after this
      await c.write(`GET / HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read(1))[0].status, 200);
    }
    // The worker is stopped while the stop is asked for and then the next
    // request arrives: when it runs again, it sees them in that order, so
    // the stop finds an idle connection with a request in the kernel.
    const from = d.logs.length;
    process.kill(worker, 'SIGSTOP');
    try {
      d.signal('SIGQUIT');
      await d.waitForLog(/master notice: graceful stop: 1 workers/, undefined, from);
      await delay(100);
      await busy.write(`GET /next HTTP/1.1\r\n${H}\r\n`);
      await delay(200);
    } finally { process.kill(worker, 'SIGCONT'); }
    const [r] = await busy.read(1);
    assert.equal(r.status, 200);
    assert.match(r.headers.connection ?? '', /^close$/i);
    assert.ok(await busy.waitClosed(), 'closed after the answer');
    // well before shutdown_grace (20 s) would close them
    assert.ok(await idle.waitClosed(8000), 'the idle connection is closed');
    assert.equal(idle.pending.length, 0, 'nothing sent on the idle one');
    for (const c of others) assert.ok(await c.waitClosed(8000), 'every idle connection is closed');
    const exit = await d.waitExit(15000);
    assert.equal(exit.code, 0, d.logs.slice(from).join('\n'));
  });
}

test('SIGQUIT while a request body is arriving: the request completes', async (t) => {
  const d = await startPortico({ config: baseConfig({
    workers: 1, timeouts: { client_body: '60s', shutdown_grace: '20s' },
  }) });
  t.after(() => d.stop());
  const c = await RawConn.open(d.port);
  t.after(() => c.destroy());
  await c.write(`POST / HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabc`);
  await delay(300); // setup: the worker has read the head
  const from = d.logs.length;
  d.signal('SIGQUIT');
  await d.waitForLog(/graceful stop \(asked by the master\): 1 connections open/, undefined, from);
  await c.write('defghij');
  const [r] = await c.read(1);
  assert.equal(r.status, 200);
  assert.match(r.headers.connection ?? '', /^close$/i);
  const exit = await d.waitExit(15000);
  assert.equal(exit.code, 0);
});

test('SIGQUIT with only idle keep-alive connections exits promptly', async (t) => {
  const d = await startPortico({ config: baseConfig({
    workers: 2, timeouts: { keepalive: '60s', shutdown_grace: '30s' },
  }) });
  t.after(() => d.stop());
  const c = await RawConn.open(d.port);
  t.after(() => c.destroy());
  await c.write(`GET / HTTP/1.1\r\n${H}\r\n`);
  assert.equal((await c.read(1))[0].status, 200);
  const t0 = Date.now();
  d.signal('SIGQUIT');
  assert.ok(await c.waitClosed(10000), 'the idle connection is closed');
  const exit = await d.waitExit(10000);
  assert.equal(exit.code, 0);
  assert.ok(Date.now() - t0 < 10000, 'did not wait for shutdown_grace');
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  test(`${sig}: fast stop, exit 0, workers gone, pid file removed`, async (t) => {
    const dir = tempDir();
    const pidFile = path.join(dir, 'porticod.pid');
    const d = await startPortico({ dir, config: baseConfig({
      workers: 2, pid_file: pidFile,
      timeouts: { keepalive: '60s', shutdown_grace: '30s' },
    }) });
    t.after(() => d.stop());
    assert.equal(fs.readFileSync(pidFile, 'utf8').trim(), String(d.pid));
    const workers = await d.waitWorkers(2);
    // an open connection with a half-sent request must not hold it up
    const c = await RawConn.open(d.port);
    t.after(() => c.destroy());
    await c.write(`GET / HTTP/1.1\r\n${H}\r\n`);
    await c.read(1);
    await c.write('GET / HTTP/1.1\r\n');

    const t0 = Date.now();
    d.signal(sig);
    const exit = await d.waitExit(10000);
    const elapsed = Date.now() - t0;
    assert.equal(exit.code, 0, d.logs.join('\n'));
    assert.ok(elapsed < 5000, `stop took ${elapsed} ms`);
    assert.ok(d.logs.some((l) => /master notice: fast stop: 2 workers/.test(l)));
    assert.ok(d.logs.some((l) => /master notice: stopped$/.test(l)));
    assert.ok(await c.waitClosed(5000), 'client connection closed');
    await waitFor(() => workers.every((p) => !pidAlive(p)), { timeout: 5000, what: 'workers gone' });
    assert.ok(!fs.existsSync(pidFile), 'pid file removed');
  });
}

test('SIGUSR1 reopens the access log (logrotate style)', async (t) => {
  const dir = tempDir();
  const log = path.join(dir, 'access.log');
  const rotated = path.join(dir, 'access.log.1');
  const WORKERS = 2;
  const d = await startPortico({ dir, config: baseConfig({
    workers: WORKERS, access_log: { path: log, format: 'combined' },
  }) });
  t.after(() => d.stop());
  await d.waitWorkers(WORKERS);

  const req = (p) => rawRequest(d.port, `GET ${p} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  assert.equal(parseOne((await req('/before-rotate')).data).status, 200);
  await waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('/before-rotate'),
    { what: 'first access line' });

  fs.renameSync(log, rotated);
  const from = d.logs.length;
  d.signal('SIGUSR1');
  await d.waitForLog(/master notice: log files reopened/, undefined, from);
  // every worker has swapped its descriptors
  await waitFor(() => d.linesMatching(/worker \d+ info: log files reopened/, from).length === WORKERS,
    { what: `${WORKERS} workers to reopen` });
  assert.ok(fs.existsSync(log), 'a new access.log was created');

  const agents = await agentPerWorker(d);
  t.after(() => closeAgents(agents));
  assert.equal(agents.length, WORKERS);
  for (let i = 0; i < 4; i++) // both workers write to the new file
    assert.equal((await httpRequest(d.port, { path: `/after-rotate-${i}`, agent: agents[i % 2],
      headers: { Host: 'a.example' } })).status, 200);
  await waitFor(() => {
    const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
    return [0, 1, 2, 3].every((i) => text.includes(`/after-rotate-${i} `));
  }, { what: 'new lines in the new access.log' });
  const old = fs.readFileSync(rotated, 'utf8');
  assert.match(old, /\/before-rotate /);
  assert.doesNotMatch(old, /after-rotate/, 'nothing new went to the rotated file');
  assert.doesNotMatch(fs.readFileSync(log, 'utf8'), /before-rotate/);
});

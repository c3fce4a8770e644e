// 050-workers: the master replaces a worker that dies, and service goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { baseConfig, parseOne, pidAlive, rawRequest, startPortico, waitFor }
  from './lib/harness.mjs';

const WORKERS = 2;
const REQ = 'GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n';

async function allServed(port, n = 20) {
  const results = await Promise.all(Array.from({ length: n },
    () => rawRequest(port, REQ, { timeout: 10000 })));
  return results.map((r) => (r.data.length ? parseOne(r.data).status : 0));
}

test('kill -9 of a worker: the master logs it and starts a new one', async (t) => {
  const d = await startPortico({ config: baseConfig({ workers: WORKERS }) });
  t.after(() => d.stop());

  const before = await d.waitWorkers(WORKERS);
  const victim = before[0];
  const from = d.logs.length;
  process.kill(victim, 'SIGKILL');

  await d.waitForLog(new RegExp(
    `master error: worker \\d+ \\(pid ${victim}\\) killed by signal 9 \\(Killed\\); starting a new one`),
  undefined, from);
  const after = await waitFor(() => {
    const p = d.workerPids();
    return p.length === WORKERS && !p.includes(victim) ? p : null;
  }, { what: `${WORKERS} workers without ${victim}` });
  assert.ok(!pidAlive(victim));
  assert.ok(after.includes(before[1]), 'the other worker was left alone');
  t.diagnostic(`workers before ${before.join(',')} after ${after.join(',')}`);

  const statuses = await allServed(d.port);
  assert.deepEqual(statuses, new Array(statuses.length).fill(200));
});

test('all workers killed at once: all replaced, service goes on', async (t) => {
  const d = await startPortico({ config: baseConfig({ workers: WORKERS }) });
  t.after(() => d.stop());

  const before = await d.waitWorkers(WORKERS);
  for (const p of before) process.kill(p, 'SIGKILL');
  await waitFor(() => {
    const p = d.workerPids();
    return p.length === WORKERS && p.every((x) => !before.includes(x));
  }, { what: 'a new set of workers' });
  await waitFor(() => d.linesMatching(/killed by signal 9 \(Killed\); starting a new one/).length === WORKERS,
    { what: `${WORKERS} "killed by signal 9" lines` });
  const statuses = await allServed(d.port);
  assert.deepEqual(statuses, new Array(statuses.length).fill(200));
  assert.equal(d.exit, null);
});

test('a worker that exits on SIGTERM is replaced too', async (t) => {
  const d = await startPortico({ config: baseConfig({ workers: WORKERS }) });
  t.after(() => d.stop());
  await d.waitWorkers(WORKERS);
  // SIGTERM (not 9) to a worker: it exits; the master re-forks it too.
  const [victim] = d.workerPids();
  const from = d.logs.length;
  process.kill(victim, 'SIGTERM');
  await d.waitForLog(new RegExp(`worker \\d+ \\(pid ${victim}\\) .*starting a new one`), undefined, from);
  await waitFor(() => d.workerPids().length === WORKERS && !d.workerPids().includes(victim),
    { what: 'replacement worker' });
  const statuses = await allServed(d.port);
  assert.deepEqual(statuses, new Array(statuses.length).fill(200));
});

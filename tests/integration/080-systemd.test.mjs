// 080-systemd: what the packaged service relies on.  The sd_notify
// messages the master sends to $NOTIFY_SOCKET at start, reload (applied or
// rejected) and stop, and log rotation as logrotate does it (rename, then
// SIGUSR1) losing no access-log line while requests keep coming.
//
// Node has no AF_UNIX datagram sockets, so a small python3 script plays
// systemd's part: it binds the socket and prints each datagram as one
// JSON string per line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { baseConfig, delay, httpRequest, keepAliveAgent, startPortico, tempDir,
  waitFor, WAIT_MS } from './lib/harness.mjs';

const HAVE_PYTHON = spawnSync('python3', ['-c', 'pass']).status === 0;
const NO_PYTHON = HAVE_PYTHON ? false : 'python3 not found (apt-get install python3)';

const RECEIVER = `
import json, socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + addr[1:] if addr.startswith("@") else addr)
print("bound", flush=True)
while True:
    print(json.dumps(s.recv(65536).decode()), flush=True)
`;

/** systemd's end of NOTIFY_SOCKET: messages[] holds {KEY: value} maps. */
class NotifyReceiver {
  static async open(addr) {
    const r = new NotifyReceiver(addr);
    await waitFor(() => r.bound || r.exited, { what: 'the notify receiver to bind' });
    if (!r.bound) throw new Error(`notify receiver failed: ${r.stderr}`);
    return r;
  }

  constructor(addr) {
    this.addr = addr;
    this.messages = [];
    this.bound = false;
    this.exited = false;
    this.stderr = '';
    this.proc = spawn('python3', ['-u', '-c', RECEIVER, addr],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    this.proc.on('exit', () => { this.exited = true; });
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      if (line === 'bound') {
        this.bound = true;
        return;
      }
      const raw = JSON.parse(line);
      const fields = { raw };
      for (const l of raw.split('\n').filter(Boolean)) {
        const i = l.indexOf('=');
        fields[l.slice(0, i)] = l.slice(i + 1);
      }
      this.messages.push(fields);
    });
  }

  /** The first message from index `from` on for which pred holds. */
  async next(pred, from = 0, what = 'a notify message') {
    return waitFor(() => {
      const i = this.messages.findIndex((m, k) => k >= from && pred(m));
      return i >= 0 ? { ...this.messages[i], index: i } : null;
    }, { timeout: WAIT_MS, what: `${what}; got ${JSON.stringify(this.messages.slice(from))}` });
  }

  close() { this.proc.kill(); }
}

const monoUsec = () => process.hrtime.bigint() / 1000n; // CLOCK_MONOTONIC

test('sd_notify: READY at start, RELOADING then READY per reload, STOPPING at stop',
  { skip: NO_PYTHON }, async (t) => {
    const dir = tempDir();
    const n = await NotifyReceiver.open(path.join(dir, 'notify.sock'));
    t.after(() => n.close());
    const d = await startPortico({ dir, env: { NOTIFY_SOCKET: n.addr } });
    t.after(() => d.stop());

    const ready = await n.next((m) => m.READY === '1', 0, 'READY=1');
    assert.equal(ready.index, 0, 'READY=1 is the first message');
    assert.equal(Number(ready.MAINPID), d.pid, 'MAINPID is the master');
    assert.match(ready.STATUS, /generation 1/);

    // A valid reload: RELOADING=1 (with the monotonic clock), then READY=1.
    let from = n.messages.length;
    const before = monoUsec();
    const ok = await d.reload(baseConfig({ workers: 1 }));
    assert.ok(ok.ok, ok.lines.join('\n'));
    const reloading = await n.next((m) => m.RELOADING === '1', from, 'RELOADING=1');
    const usec = BigInt(reloading.MONOTONIC_USEC);
    assert.ok(usec >= before && usec <= monoUsec(),
      `MONOTONIC_USEC ${usec} is CLOCK_MONOTONIC (${before}..)`);
    const done = await n.next((m) => m.READY === '1', reloading.index, 'READY=1 after the reload');
    assert.match(done.STATUS, /generation 2/);

    // A rejected reload: the old configuration keeps serving, so READY=1.
    from = n.messages.length;
    const bad = await d.reload('workers: [\n');
    assert.equal(bad.ok, false);
    const r2 = await n.next((m) => m.RELOADING === '1', from, 'RELOADING=1 (rejected)');
    const back = await n.next((m) => m.READY === '1', r2.index, 'READY=1 after the rejection');
    assert.match(back.STATUS, /rejected/);

    from = n.messages.length;
    d.signal('SIGQUIT');
    await n.next((m) => m.STOPPING === '1', from, 'STOPPING=1');
    const exit = await d.waitExit();
    assert.equal(exit.code, 0);
    assert.equal(n.messages.filter((m) => m.READY === '1').length, 3,
      JSON.stringify(n.messages));
  });

test('sd_notify: an abstract NOTIFY_SOCKET (@name) and a fast stop', { skip: NO_PYTHON },
  async (t) => {
    const n = await NotifyReceiver.open(`@portico-test-${process.pid}-${Date.now()}`);
    t.after(() => n.close());
    const d = await startPortico({ env: { NOTIFY_SOCKET: n.addr } });
    t.after(() => d.stop());
    const ready = await n.next((m) => m.READY === '1');
    assert.equal(Number(ready.MAINPID), d.pid);
    const from = n.messages.length;
    d.signal('SIGTERM');
    await n.next((m) => m.STOPPING === '1', from, 'STOPPING=1');
    assert.equal((await d.waitExit()).code, 0);
  });

test('sd_notify: an unreachable NOTIFY_SOCKET is logged once and changes nothing',
  async (t) => {
    const dir = tempDir();
    const d = await startPortico({ dir,
      env: { NOTIFY_SOCKET: path.join(dir, 'nobody-listens.sock') } });
    t.after(() => d.stop());
    assert.equal((await httpRequest(d.port)).status, 200);
    assert.ok((await d.reload(baseConfig())).ok);
    assert.equal(d.linesMatching(/master warn: cannot notify systemd \(NOTIFY_SOCKET\)/).length, 1,
      d.logs.join('\n'));
    assert.equal((await d.stop('SIGQUIT')).code, 0);
  });

test('log rotation under load: rename + SIGUSR1 five times, no access line lost',
  async (t) => {
    const dir = tempDir();
    const log = path.join(dir, 'access.log');
    const d = await startPortico({ dir, config: baseConfig({
      workers: 2, access_log: { path: log, format: 'combined' },
    }) });
    t.after(() => d.stop());
    await d.waitWorkers(2);

    // Four clients send requests with distinct paths until told to stop.
    const agent = keepAliveAgent(4);
    t.after(() => agent.destroy());
    let stop = false;
    let made = 0;
    const failures = [];
    const client = async (c) => {
      for (let i = 0; !stop; i++) {
        try {
          const r = await httpRequest(d.port, { path: `/c${c}/r${i}`, agent });
          if (r.status === 200) made++;
          else failures.push(`/c${c}/r${i}: ${r.status}`);
        } catch (e) {
          failures.push(`/c${c}/r${i}: ${e.message}`);
        }
      }
    };
    const clients = [0, 1, 2, 3].map(client);

    const size = (f) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
    for (let k = 1; k <= 5; k++) {
      // Rotate once the current file has lines, with requests going on.
      await waitFor(() => made >= k * 50 && size(log) > 0,
        { what: `${k * 50} requests and lines in access.log` });
      fs.renameSync(log, `${log}.${k}`);
      const from = d.logs.length;
      d.signal('SIGUSR1');
      await d.waitForLog(/master notice: log files reopened/, undefined, from);
      await waitFor(() => d.linesMatching(/worker \d+ info: log files reopened/, from).length === 2,
        { what: 'both workers to reopen' });
    }
    await waitFor(() => made >= 300, { what: '300 requests' });
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);

    const files = fs.readdirSync(dir).filter((f) => f.startsWith('access.log'));
    assert.equal(files.length, 6, `access.log and five rotated files: ${files}`);
    const lines = () => files.flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8')
      .split('\n').filter(Boolean));
    // A line is written once its response is sent: give the last ones a moment.
    await waitFor(() => lines().length >= made,
      { what: `${made} access lines (have ${lines().length})` });
    await delay(200);
    const all = lines();
    assert.equal(all.length, made, 'one access line per request, across all files');
    const paths = all.map((l) => /"GET (\/c\d\/r\d+) HTTP\/1\.1" 200 /.exec(l)?.[1]);
    assert.ok(paths.every(Boolean), 'every line is whole');
    assert.equal(new Set(paths).size, made, 'no line twice');
    for (const f of files.filter((x) => x !== 'access.log'))
      assert.ok(fs.statSync(path.join(dir, f)).size > 0, `${f} got lines before its rotation`);
  });

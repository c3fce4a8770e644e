// 010-cli: the command line.  -t, -T, -V, -h, bad options, and a start
// with a broken config, all without a running daemon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { baseConfig, PORTICOD, runPorticod, startPortico, tempDir, toYaml }
  from './lib/harness.mjs';

const EX_USAGE = 64;
const EX_CONFIG = 78;

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('the binary exists and is executable', () => {
  assert.doesNotThrow(() => fs.accessSync(PORTICOD, fs.constants.X_OK),
    `PORTICOD=${PORTICOD} is not an executable file (build it first)`);
});

test('-t on a valid file exits 0 and says so', () => {
  const dir = tempDir();
  const file = path.join(dir, 'good.yaml');
  fs.writeFileSync(file, toYaml(baseConfig({
    access_log: { path: path.join(dir, 'access.log'), format: 'combined' },
    limits: { max_connections: 100, max_header_bytes: '16k', max_body_bytes: '1m' },
    timeouts: { client_header: '5s', keepalive: '30s', shutdown_grace: '2s' },
    routes: [
      { match: { host: 'a.example', path_prefix: '/a' },
        respond: { status: 200, body: 'a', headers: { 'X-Route': 'a' } } },
      { match: { path_prefix: '/' }, respond: { status: 404, body: 'none' } },
    ],
  })));
  const r = runPorticod(['-t', '-c', file]);
  assert.equal(r.code, 0, `stderr: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`porticod: ${esc(file)}: configuration is valid`));
  assert.equal(r.stdout, '', '-t prints nothing on stdout');
});

// Three independent errors on known lines: every one must be reported,
// each as FILE:LINE:COL: error: MESSAGE, then the count.
const THREE_ERRORS = [
  'workers: 1',                       // 1
  'listeners:',                       // 2
  '  - listen: "127.0.0.1:0"',        // 3
  'listner: 5',                       // 4  unknown key
  'timeouts:',                        // 5
  '  keepalive: soon',                // 6  not a duration
  'routes:',                          // 7
  '  - match: { path_prefix: "/" }',  // 8
  '    respond: { status: 999 }',     // 9  status out of 100..599
  '',
].join('\n');

test('-t on a file with 3 errors exits 78 and prints all 3 with file:line:col', () => {
  const dir = tempDir();
  const file = path.join(dir, 'bad.yaml');
  fs.writeFileSync(file, THREE_ERRORS);
  const r = runPorticod(['-t', '-c', file]);
  assert.equal(r.code, EX_CONFIG, `stderr: ${r.stderr}`);
  const errRe = new RegExp(`^${esc(file)}:(\\d+):(\\d+): error: (.+)$`);
  const errs = r.stderr.split('\n').map((l) => errRe.exec(l)).filter(Boolean);
  assert.equal(errs.length, 3, `expected 3 error lines, got:\n${r.stderr}`);
  const lines = errs.map((m) => Number(m[1])).sort((a, b) => a - b);
  assert.deepEqual(lines, [4, 6, 9], `error lines point at the wrong lines:\n${r.stderr}`);
  for (const m of errs) assert.ok(Number(m[2]) >= 1, `column >= 1: ${m[0]}`);
  const unknown = errs.find((m) => m[1] === '4');
  assert.equal(unknown[2], '1', 'the unknown key is at column 1');
  assert.match(unknown[3], /listner/, 'the message names the unknown key');
  assert.match(r.stderr, new RegExp(`porticod: 3 errors in ${esc(file)}; invalid`));
});

test('-T prints the effective config, which is itself valid', () => {
  const dir = tempDir();
  const file = path.join(dir, 'in.yaml');
  fs.writeFileSync(file, toYaml(baseConfig({
    workers: 3,
    routes: [{ match: { host: 'x.example', path_prefix: '/x' },
      respond: { status: 201, body: 'line1\nline2 "quoted"', headers: { 'X-A': 'b c' } } }],
  })));
  const r = runPorticod(['-T', '-c', file]);
  assert.equal(r.code, 0, `stderr: ${r.stderr}`);
  assert.match(r.stdout, /^workers: 3$/m);
  // defaults are filled in
  assert.match(r.stdout, /max_header_bytes/);
  assert.match(r.stdout, /keepalive/);
  const dumped = path.join(dir, 'dumped.yaml');
  fs.writeFileSync(dumped, r.stdout);
  const again = runPorticod(['-t', '-c', dumped]);
  assert.equal(again.code, 0, `-T output does not re-validate:\n${again.stderr}\n--- dump ---\n${r.stdout}`);
  // and dumping the dump gives the same text (a fixed point)
  const twice = runPorticod(['-T', '-c', dumped]);
  const body = (t) => t.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
  assert.equal(body(twice.stdout), body(r.stdout), '-T of the -T output differs');
});

test('-V prints the version and exits 0', () => {
  const r = runPorticod(['-V']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^porticod \S+/);
  assert.match(r.stdout, /libevent/);
});

test('-h prints usage on stdout and exits 0', () => {
  const r = runPorticod(['-h']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /usage: porticod/);
});

test('an unknown option exits 64 with usage on stderr', () => {
  const r = runPorticod(['-x']);
  assert.equal(r.code, EX_USAGE);
  assert.match(r.stderr, /usage: porticod/);
  const extra = runPorticod(['-t', 'stray-argument']);
  assert.equal(extra.code, EX_USAGE);
});

test('start-up with a broken config exits 78 without forking', async () => {
  const dir = tempDir();
  const d = await startPortico({ dir, config: THREE_ERRORS, waitReady: false });
  try {
    const exit = await d.waitExit();
    assert.equal(exit.code, EX_CONFIG, d.logs.join('\n'));
    const all = d.logs.join('\n');
    assert.match(all, /porticod: 3 errors in .*; not started/);
    assert.doesNotMatch(all, /listening on|ready:/, 'nothing was opened or forked');
  } finally {
    await d.stop();
  }
});

test('start-up with a missing config file exits 78', () => {
  const dir = tempDir();
  const r = runPorticod(['-c', path.join(dir, 'nope.yaml')]);
  assert.equal(r.code, EX_CONFIG, r.stderr);
  assert.match(r.stderr, /nope\.yaml/);
});

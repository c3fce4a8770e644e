// harness.mjs -- start the real porticod with a real config, talk raw HTTP
// to it, and clean up after.  Every helper waits on a condition with a
// generous bound; nothing here sleeps to decide whether a test passed.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export const PORTICOD =
  process.env.PORTICOD || path.resolve(here, '../../../src/porticod');

// The machine may be slow and shared: bounds are generous on purpose.
export const WAIT_MS = 20000;
// Clean-up bound for stop(): past it, SIGKILL.  070-signals checks that a
// stop is prompt; clean-up only has to be sure.
const STOP_MS = 8000;

// ---- small utilities ------------------------------------------------------

export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

const tempDirs = [];

/**
 * A fresh temp dir for one test.  Removed when the test file's process
 * exits, unless PORTICO_TEST_KEEP is set (to look at configs and logs).
 */
export function tempDir(prefix = 'portico-it-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

process.on('exit', () => {
  if (process.env.PORTICO_TEST_KEEP) return;
  for (const d of tempDirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

/** Poll fn() (sync or async) until it returns a truthy value. */
export async function waitFor(fn, { timeout = WAIT_MS, interval = 50,
  what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      throw new Error(`timed out after ${timeout} ms waiting for ${what}` +
        (last instanceof Error ? ` (last error: ${last.message})` : ''));
    await delay(interval);
  }
}

export function pidAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // state is the field after the ")" that closes the command name
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function isPorticod(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('porticod');
  } catch {
    return false;
  }
}

/** Live (non-zombie) children of pid, from /proc/PID/task/PID/children. */
export function childPids(pid) {
  let text = '';
  try {
    text = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
  } catch {
    return [];
  }
  return text.trim().split(/\s+/).filter(Boolean).map(Number).filter(pidAlive);
}

// ---- YAML ----------------------------------------------------------------

const PLAIN_UNIT = /^\d+(ms|s|m|h|k|g|K|M|G)$/;
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

function yamlScalar(v) {
  if (v === null) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') {
    // sizes and durations stay plain, the way people write them
    if (PLAIN_UNIT.test(v)) return v;
    return JSON.stringify(v);
  }
  throw new Error(`cannot write ${typeof v} as YAML`);
}

function yamlKey(k) {
  return PLAIN_KEY.test(k) ? k : JSON.stringify(k);
}

const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function yamlLines(v, indent) {
  const pad = ' '.repeat(indent);
  const out = [];
  if (Array.isArray(v)) {
    for (const item of v) {
      if (isMap(item) && Object.keys(item).length) {
        const sub = yamlLines(item, indent + 2);
        out.push(pad + '- ' + sub[0].slice(indent + 2));
        out.push(...sub.slice(1));
      } else if (Array.isArray(item) && item.length) {
        out.push(pad + '-');
        out.push(...yamlLines(item, indent + 2));
      } else {
        out.push(pad + '- ' + inline(item));
      }
    }
    return out;
  }
  for (const [k, val] of Object.entries(v)) {
    if (val === undefined) continue;
    if ((isMap(val) && Object.keys(val).length) ||
        (Array.isArray(val) && val.length)) {
      out.push(pad + yamlKey(k) + ':');
      out.push(...yamlLines(val, indent + 2));
    } else {
      out.push(pad + yamlKey(k) + ': ' + inline(val));
    }
  }
  return out;
}

function inline(v) {
  if (Array.isArray(v)) return '[]';
  if (isMap(v)) return '{}';
  return yamlScalar(v);
}

/** YAML text for a plain object (maps, lists, strings, numbers, booleans). */
export function toYaml(obj) {
  return yamlLines(obj, 0).join('\n') + '\n';
}

/** A small valid config: one port-0 listener, one catch-all route. */
export function baseConfig(overrides = {}) {
  return {
    workers: 2,
    error_log: { level: 'info' },
    listeners: [{ listen: '127.0.0.1:0' }],
    routes: [{ match: { path_prefix: '/' }, respond: { status: 200, body: 'ok\n' } }],
    ...overrides,
  };
}

export function writeConfig(file, config) {
  fs.writeFileSync(file, typeof config === 'string' ? config : toYaml(config));
}

/** Run porticod to completion (for -t, -T, -V ...). */
export function runPorticod(args, { timeout = WAIT_MS } = {}) {
  const r = spawnSync(PORTICOD, args, { encoding: 'utf8', timeout });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

// ---- the daemon ------------------------------------------------------------

const running = new Set();

// A last resort: whatever happens, no daemon outlives the test process.
process.on('exit', () => {
  for (const d of running) d.killAllSync();
});
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15]]) {
  process.once(sig, () => {
    for (const d of running) d.killAllSync();
    process.exit(128 + n);
  });
}

const LISTENING = /master notice: listening on (\S+) \(listen: "([^"]*)"\)/;

/**
 * Start porticod in the foreground.  opts: config (object or YAML text),
 * workers (overrides config.workers), dir (default: a new temp dir),
 * args (more arguments), env (variables added to this process's),
 * waitReady (default true).  Resolves once the master logged "ready:".
 */
export async function startPortico(opts = {}) {
  const dir = opts.dir || tempDir();
  let config = opts.config ?? baseConfig();
  if (typeof config !== 'string' && opts.workers !== undefined)
    config = { ...config, workers: opts.workers };
  const confPath = path.join(dir, 'portico.yaml');
  writeConfig(confPath, config);

  const proc = spawn(PORTICOD, ['-c', confPath, ...(opts.args || [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
  });
  const d = new Daemon(proc, dir, confPath);
  running.add(d);
  if (opts.waitReady === false) return d;
  try {
    await d.waitForLog(/master notice: ready: \d+ workers/, opts.timeout ?? WAIT_MS);
  } catch (e) {
    await d.stop();
    throw new Error(`porticod did not start: ${e.message}\n--- log ---\n` +
      d.logs.join('\n'));
  }
  return d;
}

class Daemon {
  constructor(proc, dir, confPath) {
    this.proc = proc;
    this.pid = proc.pid;
    this.dir = dir;
    this.confPath = confPath;
    this.logs = [];
    this.stdout = '';
    this.addresses = []; // bound "host:port", in log order
    this.seenWorkers = new Set();
    this.exit = null; // {code, signal} once exited
    this.spawnError = null;
    this.waiters = new Set();
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        // Resolve once stderr is drained too (its last lines, such as
        // "stopped", may still be in the pipe), or after a short bound in
        // case a straggling worker keeps the pipe open.
        const exit = { code, signal };
        const finish = () => {
          if (this.exit) return;
          this.exit = exit;
          this.notify();
          resolve(exit);
        };
        if (proc.stderr.readableEnded) finish();
        proc.stderr.once('end', finish);
        setTimeout(finish, 2000);
      });
      proc.on('error', (err) => {
        this.spawnError = err;
        this.exit = { code: null, signal: null, error: err };
        this.notify();
        resolve(this.exit);
      });
    });
    let partial = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) this.addLine(line);
    });
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk) => { this.stdout += chunk; });
  }

  addLine(line) {
    this.logs.push(line);
    if (process.env.PORTICO_TEST_VERBOSE) process.stderr.write(`[porticod] ${line}\n`);
    if (process.env.PORTICO_TEST_LOGFILE) fs.appendFileSync(process.env.PORTICO_TEST_LOGFILE, line + "\n");
    const m = LISTENING.exec(line);
    if (m) this.addresses.push(m[1]);
    this.notify();
  }

  notify() {
    for (const w of this.waiters) w();
  }

  /** Port of the first (or the i-th) "listening on" line. */
  get port() { return this.portOf(0); }
  get ports() { return this.addresses.map((a) => Number(a.slice(a.lastIndexOf(':') + 1))); }
  portOf(i) { return this.ports[i]; }

  /** Host and port of a listening address as logged, e.g. "127.0.0.2:4321". */
  addressOf(hostPrefix) {
    const a = this.addresses.find((x) => x.startsWith(hostPrefix));
    if (!a) return undefined;
    const i = a.lastIndexOf(':');
    return { host: a.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(a.slice(i + 1)) };
  }

  /**
   * Wait for a log line matching re among lines from index `from` on.
   * Resolves with the match (an array with .line and .index).
   */
  waitForLog(re, timeoutMs = WAIT_MS, from = 0) {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        for (; i < this.logs.length; i++) {
          const m = re.exec(this.logs[i]);
          if (m) {
            m.line = this.logs[i];
            m.index = i;
            done();
            resolve(m);
            return;
          }
        }
        if (this.exit) {
          done();
          reject(new Error(`porticod exited (${JSON.stringify(this.exit)}) ` +
            `before logging ${re}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no log line matching ${re} within ${timeoutMs} ms;` +
          ` last lines:\n${this.logs.slice(-15).join('\n')}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Lines from index `from` on that match re. */
  linesMatching(re, from = 0) {
    return this.logs.slice(from).filter((l) => re.test(l));
  }

  /** Live worker processes (children of the master). */
  workerPids() {
    const pids = childPids(this.pid);
    for (const p of pids) this.seenWorkers.add(p);
    return pids;
  }

  /** Wait until exactly n worker processes run; returns their pids. */
  async waitWorkers(n, timeout = WAIT_MS) {
    return waitFor(() => {
      const p = this.workerPids();
      return p.length === n ? p : null;
    }, { timeout, what: `${n} worker processes (have ${this.workerPids().length})` });
  }

  /**
   * SIGHUP, optionally after writing a new config.  Resolves once the
   * master says "reload complete" ({ok: true}) or "reload rejected"
   * ({ok: false}); `lines` holds everything logged meanwhile.
   */
  async reload(newConfig, timeoutMs = WAIT_MS) {
    if (newConfig !== undefined) writeConfig(this.confPath, newConfig);
    const from = this.logs.length;
    this.signal('SIGHUP');
    const m = await this.waitForLog(
      /master (?:notice|error): (reload complete: generation \d+|reload rejected: .*still serving the current configuration)/,
      timeoutMs, from);
    return {
      ok: m[1].startsWith('reload complete'),
      line: m.line,
      lines: this.logs.slice(from, m.index + 1),
    };
  }

  signal(sig) {
    if (this.exit) throw new Error(`porticod already exited: ${JSON.stringify(this.exit)}`);
    process.kill(this.pid, sig);
  }

  /** Wait for the master to exit; rejects after timeoutMs. */
  async waitExit(timeoutMs = WAIT_MS) {
    let timer;
    const t = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`porticod still running after ${timeoutMs} ms`)),
        timeoutMs);
    });
    try {
      return await Promise.race([this.exited, t]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Stop the daemon (SIGTERM by default) and make sure nothing it started
   * is left: stragglers get SIGKILL.  Safe to call more than once.
   */
  async stop(sig = 'SIGTERM', timeoutMs = STOP_MS) {
    this.workerPids();
    if (!this.exit) {
      try { process.kill(this.pid, sig); } catch { /* gone */ }
      try {
        await this.waitExit(timeoutMs);
      } catch {
        this.killAllSync();
        await this.exited;
      }
    }
    // Workers exit once their channel to the master closes; make sure.
    await waitFor(() => [...this.seenWorkers].every((p) => !pidAlive(p)),
      { timeout: 5000, what: 'workers to exit' }).catch(() => this.killAllSync());
    running.delete(this);
    return this.exit;
  }

  killAllSync() {
    this.workerPids();
    for (const p of [this.pid, ...this.seenWorkers]) {
      if (pidAlive(p) && isPorticod(p)) {
        try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
      }
    }
  }
}

// ---- raw HTTP ------------------------------------------------------------------

/**
 * Send bytes on a new connection and collect everything until the server
 * closes or `timeout` ms pass.  Resolves {data, text, closed, timedOut,
 * error}; `closed` means the server ended the connection.
 */
export function rawRequest(port, bytes, { host = '127.0.0.1', timeout = 10000,
  halfClose = false } = {}) {
  return new Promise((resolve) => {
    const chunks = [];
    let settled = false;
    const sock = net.connect({ port, host });
    const finish = (how) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const data = Buffer.concat(chunks);
      resolve({ data, text: data.toString('latin1'), ...how });
    };
    const timer = setTimeout(() => finish({ closed: false, timedOut: true }), timeout);
    sock.on('connect', () => {
      sock.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
      if (halfClose) sock.end();
    });
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => finish({ closed: true, timedOut: false }));
    sock.on('close', () => finish({ closed: true, timedOut: false }));
    sock.on('error', (error) => finish({ closed: true, timedOut: false, error }));
  });
}

/**
 * Split a raw byte stream into HTTP responses.  `isHead(i)` says whether
 * the i-th final response answers a HEAD (no body).  1xx, 204 and 304
 * carry no body; chunked bodies are decoded; without Content-Length the
 * body runs to the end.
 * Returns {responses, rest} where rest holds the bytes of an incomplete
 * last response.  Each response: {version, status, reason, headers
 * (lower-cased names, last wins), headerList, body (Buffer), raw}.
 */
export function parseResponses(buf, { isHead = () => false, toEnd = true } = {}) {
  const responses = [];
  let off = 0;
  let finals = 0;
  while (off < buf.length) {
    const end = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (end < 0) break;
    const head = buf.slice(off, end).toString('latin1');
    const [statusLine, ...fieldLines] = head.split('\r\n');
    const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(statusLine)}`);
    const status = Number(m[2]);
    const headers = {};
    const headerList = [];
    for (const l of fieldLines) {
      const i = l.indexOf(':');
      const name = l.slice(0, i).toLowerCase();
      const value = l.slice(i + 1).trim();
      headers[name] = value;
      headerList.push([name, value]);
    }
    let bodyStart = end + 4;
    let bodyLen = 0;
    const informational = status >= 100 && status < 200;
    const hasBody = !informational && !(status === 204 || status === 304) && !isHead(finals);
    if (hasBody && /chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const chunked = decodeChunked(buf, bodyStart);
      if (!chunked) break;
      responses.push({
        version: m[1], status, reason: m[3] ?? '', headers, headerList,
        body: chunked.body, raw: buf.slice(off, chunked.end),
      });
      finals++;
      off = chunked.end;
      continue;
    }
    if (hasBody) {
      if (headers['content-length'] !== undefined) {
        bodyLen = Number(headers['content-length']);
      } else if (toEnd) {
        bodyLen = buf.length - bodyStart;
      }
    }
    if (bodyStart + bodyLen > buf.length) break;
    responses.push({
      version: m[1], status, reason: m[3] ?? '', headers, headerList,
      body: buf.slice(bodyStart, bodyStart + bodyLen),
      raw: buf.slice(off, bodyStart + bodyLen),
    });
    if (!informational) finals++;
    off = bodyStart + bodyLen;
  }
  return { responses, rest: buf.slice(off) };
}

/** Decode a chunked body starting at off: {body, end} or null if short. */
function decodeChunked(buf, off) {
  const parts = [];
  for (;;) {
    const eol = buf.indexOf('\r\n', off, 'latin1');
    if (eol < 0) return null;
    const size = parseInt(buf.slice(off, eol).toString('latin1').split(';')[0], 16);
    if (Number.isNaN(size)) throw new Error('bad chunk size');
    off = eol + 2;
    if (size === 0) {
      // trailers, then an empty line
      for (;;) {
        const t = buf.indexOf('\r\n', off, 'latin1');
        if (t < 0) return null;
        const empty = t === off;
        off = t + 2;
        if (empty) return { body: Buffer.concat(parts), end: off };
      }
    }
    if (off + size + 2 > buf.length) return null;
    parts.push(buf.slice(off, off + size));
    off += size + 2;
  }
}

/** The first response in a raw stream (throws when there is none). */
export function parseOne(buf, opts) {
  const { responses } = parseResponses(buf, opts);
  if (!responses.length)
    throw new Error(`no complete HTTP response in ${JSON.stringify(buf.toString('latin1'))}`);
  return responses[0];
}

/**
 * A raw client connection kept open across requests.  read(n) waits for n
 * more complete responses; closedPromise resolves when the server closes.
 */
export class RawConn {
  static open(port, host = '127.0.0.1', timeout = WAIT_MS) {
    return new Promise((resolve, reject) => {
      const c = new RawConn(port, host);
      const t = setTimeout(() => { c.destroy(); reject(new Error('connect timeout')); }, timeout);
      c.sock.once('connect', () => { clearTimeout(t); resolve(c); });
      c.sock.once('error', (e) => { clearTimeout(t); reject(e); });
    });
  }

  constructor(port, host = '127.0.0.1') {
    this.buf = Buffer.alloc(0);
    this.consumed = 0; // bytes of buf already returned as responses
    this.finals = 0;   // final responses returned so far
    this.heads = [];   // per final response index: answers a HEAD?
    this.closed = false;
    this.error = null;
    this.waiters = new Set();
    this.sock = net.connect({ port, host });
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.notify(); });
    this.sock.on('end', () => { this.closed = true; this.notify(); });
    this.sock.on('close', () => { this.closed = true; this.notify(); });
    this.sock.on('error', (e) => { this.error = e; this.closed = true; this.notify(); });
    this.closedPromise = new Promise((r) => {
      const check = () => { if (this.closed) { this.waiters.delete(check); r(); } };
      this.waiters.add(check);
    });
  }

  notify() { for (const w of [...this.waiters]) w(); }

  write(bytes) {
    return new Promise((resolve, reject) => {
      this.sock.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes,
        (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Bytes received and not yet returned by read(). */
  get pending() { return this.buf.slice(this.consumed); }

  /**
   * Wait for n complete responses (1xx included) after those already read.
   * opts.head: a boolean or array saying which final responses answer HEAD.
   */
  read(n = 1, { timeout = WAIT_MS, head = false } = {}) {
    return new Promise((resolve, reject) => {
      const heads = Array.isArray(head) ? head : new Array(n).fill(head);
      const base = this.finals;
      const check = () => {
        let responses;
        try {
          ({ responses } = parseResponses(this.pending,
            { isHead: (i) => !!heads[i], toEnd: this.closed }));
        } catch (e) {
          done();
          reject(new Error(`${e.message}; bytes: ` +
            JSON.stringify(this.pending.toString('latin1').slice(0, 600))));
          return;
        }
        if (responses.length >= n) {
          const got = responses.slice(0, n);
          for (const r of got) {
            this.consumed += r.raw.length;
            if (r.status >= 200) this.finals++;
          }
          done();
          resolve(got);
        } else if (this.closed) {
          done();
          reject(new Error(`connection closed after ${responses.length} of ${n} responses` +
            ` (had ${this.finals - base} before); bytes: ` +
            JSON.stringify(this.pending.toString('latin1').slice(0, 400))));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeout} ms waiting for ${n} responses; ` +
          `bytes: ${JSON.stringify(this.pending.toString('latin1').slice(0, 400))}`));
      }, timeout);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves true once the server closed, false after timeout. */
  async waitClosed(timeout = WAIT_MS) {
    let timer;
    const t = new Promise((r) => { timer = setTimeout(() => r(false), timeout); });
    const r = await Promise.race([this.closedPromise.then(() => true), t]);
    clearTimeout(timer);
    return r;
  }

  destroy() { this.sock.destroy(); }
}

// ---- node's http client --------------------------------------------------------

/** A keep-alive agent holding at most one socket, so reuse is visible. */
export function keepAliveAgent(maxSockets = 1) {
  return new http.Agent({ keepAlive: true, maxSockets });
}

/**
 * One request with node's http client.  Resolves {status, headers, body
 * (string), reused, localPort}.
 */
export function httpRequest(port, { path: p = '/', method = 'GET', headers = {},
  agent, host = '127.0.0.1', body, timeout = WAIT_MS, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path: p, method, headers,
      agent: agent ?? false, localAddress }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        reused: req.reusedSocket, localPort: req.socket?.localPort,
      }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`request timed out after ${timeout} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// ---- reaching every worker -------------------------------------------------

/**
 * This network namespace's TCP sockets, from /proc/net/tcp and tcp6:
 * {localPort, remotePort, state (hex, '0A' listening), inode}.
 */
export function tcpSockets() {
  const out = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10) continue;
      out.push({ localPort: parseInt(c[1].split(':')[1], 16),
        remotePort: parseInt(c[2].split(':')[1], 16), state: c[3], inode: c[9] });
    }
  }
  return out;
}

/**
 * Pipeline `heads` (request heads, each ending CRLF CRLF) on one
 * connection whose client reads nothing until all are written and
 * 500 ms have passed, so that the server finds the socket full; then
 * read an answer to each.  Resolves {responses, bytes} (bytes: all the
 * answers' raw bytes).
 */
export async function pipelineUnread(port, heads, { timeout = 30000 } = {}) {
  const c = await RawConn.open(port);
  try {
    c.sock.pause(); // nothing read: the socket fills
    await c.write(heads.join(''));
    await delay(500);
    c.sock.resume();
    const responses = await c.read(heads.length, { timeout });
    return { responses, bytes: responses.reduce((n, r) => n + r.raw.length, 0) };
  } finally { c.destroy(); }
}

/**
 * One request with Connection: close on a new connection; resolves its
 * answer once the server has ended the connection, and says whether a
 * worker of d still held the server's socket at that moment (the quick
 * close comes before the FIN; the lingering one after).
 */
export async function closingRequest(d, head) {
  const c = await RawConn.open(d.port);
  try {
    const port = c.sock.localPort;
    await c.write(head);
    const [response] = await c.read(1);
    await c.closedPromise; // the server's FIN
    return { response, held: workerOf(d, port) !== null };
  } finally { c.destroy(); }
}

/**
 * The worker of d holding the server side of the TCP connection whose
 * client end is on clientPort (from /proc/net/tcp*), or null.
 */
export function workerOf(d, clientPort) {
  const inodes = new Set(tcpSockets()
    .filter((s) => s.remotePort === clientPort).map((s) => s.inode));
  return d.workerPids().find((pid) => socketFds(pid, inodes).size > 0) ?? null;
}

/** pid's descriptors and what each is: [{fd, target}] (none once it is gone). */
export function fdsOf(pid) {
  const out = [];
  let fds;
  try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { return out; }
  for (const fd of fds) {
    try {
      out.push({ fd: Number(fd), target: fs.readlinkSync(`/proc/${pid}/fd/${fd}`) });
    } catch { /* closed meanwhile */ }
  }
  return out;
}

/** pid's descriptors of sockets whose inode is in inodes. */
export function socketFds(pid, inodes) {
  return new Set(fdsOf(pid).filter(({ target }) =>
    inodes.has(/^socket:\[(\d+)\]$/.exec(target)?.[1])).map(({ fd }) => fd));
}

/**
 * One keep-alive http.Agent per worker of d, each holding an open
 * connection that worker accepted: requests sent through agents[i] are
 * served by worker i.  New connections one after another all go to the
 * worker that waits first (EPOLLEXCLUSIVE); this opens connections and
 * holds them until that worker is over its share and the others accept
 * too, then closes the ones it does not keep.  An agent whose connection
 * closes fails its next request rather than reach another worker.
 * Close them with closeAgents().
 */
export async function agentPerWorker(d, { port = d.port, host = '127.0.0.1',
  workers = d.workerPids().length, max = 200 } = {}) {
  const held = [];
  const byWorker = new Map();
  try {
    while (byWorker.size < workers) {
      if (held.length >= max)
        throw new Error(`${max} connections reached ${byWorker.size} of ${workers} workers`);
      const s = await new Promise((resolve, reject) => {
        const c = net.connect({ port, host }, () => resolve(c));
        c.once('error', reject);
      });
      held.push(s);
      const pid = await waitFor(() => workerOf(d, s.localPort),
        { what: `the worker accepting the connection from port ${s.localPort}` });
      if (!byWorker.has(pid)) byWorker.set(pid, s);
    }
  } finally {
    for (const s of held) if (![...byWorker.values()].includes(s)) s.destroy();
  }
  return [...byWorker.values()].map((s) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agent.heldSocket = s;
    let given = false;
    agent.createConnection = () => {
      if (given) throw new Error('the connection to this worker closed');
      given = true;
      return s;
    };
    return agent;
  });
}

export function closeAgents(agents) {
  for (const a of agents ?? []) {
    a.destroy();
    a.heldSocket.destroy();
  }
}

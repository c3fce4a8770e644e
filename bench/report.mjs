// report.mjs -- the tables of bench/RESULTS.md from bench/run's raw lines
// (round, config, scenario, m1, m2, m3, cpu, note, run), medians over rounds.
// "run" is the date and mode of the run that measured the line; lines of
// another run than this one (STAMP) are kept from earlier runs and marked.
// A note starting with FAILED is a cache-hit load that reached the origin:
// no figures, listed as a failure.
// Usage: node report.mjs RAW QUICK XFER_MB IDLE_N SSE_N WS_C HAVE_WS IDLE_WANTED NOFILE CACHE_BUILT STAMP PACE_SHARE
import fs from 'node:fs';

const [rawFile, quick, xferMb, idleN, sseN, wsC, haveWs, idleWanted, nofile, cacheBuilt, stamp, paceShare] = process.argv.slice(2);
const allRows = fs.readFileSync(rawFile, 'utf8').split('\n').filter(Boolean).map((l) => {
  const [round, config, scenario, m1, m2, m3, cpu, note, run] = l.split('\t');
  return { round, config, scenario, m: [m1, m2, m3, cpu].map(Number), note: note || '', run: run || stamp };
});
const failed = allRows.filter((r) => r.note.startsWith('FAILED'));
const rows = allRows.filter((r) => !r.note.startsWith('FAILED'));
// the run of each scenario's rows, when not this one
const runOf = new Map();
for (const r of rows) if (r.run !== stamp) runOf.set(r.scenario, r.run);
const dated = (sc, title) => (runOf.has(sc) ? `${title} *(earlier run: ${runOf.get(sc)})*` : title);

const median = (a) => {
  const v = a.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (!v.length) return NaN;
  const h = v.length >> 1;
  return v.length % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
};
const peerOf = (config) => config.split(':')[0];
const label = (config) => {
  const [p, w] = config.split(':');
  if (p === 'varnish') return 'varnish (2 thread pools)';
  if (p === 'direct') return 'origin alone (no proxy)';
  if (p === 'direct2') return 'the same responder, 2 processes on one port';
  if (p === 'relay') return 'TCP relay, no HTTP (bench/relay.c)';
  if (p === 'haproxy') return `haproxy (${w} thread${w === '1' ? '' : 's'})`;
  return `${p} (${w} worker${w === '1' ? '' : 's'})`;
};
const fmt = (x, d = 0) => {
  if (!Number.isFinite(x)) return 'n/a';
  const s = x.toFixed(d);
  return d === 0 && Math.abs(x) >= 1000 ? Number(s).toLocaleString('en-US') : s;
};
// milliseconds: three decimals below 1 ms, two above
const fmtMs = (x) => fmt(x, x < 1 ? 3 : 2);
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
const PEERS = ['portico', 'nginx', 'haproxy', 'varnish'];
// bench/run writes into each load's note the time the host took from the
// cores during it ("host steal N ms", the steal column of /proc/stat)
const STEAL = /(?:^|;\s*)host steal (\d+) ms/;
const stealOf = (n) => { const m = STEAL.exec(n); return m ? Number(m[1]) : NaN; };
const withoutSteal = (n) => n.replace(STEAL, '').replace(/^;\s*/, '').trim();

// medians per (config, scenario)
const stats = new Map();
for (const r of rows) {
  const k = `${r.config}|${r.scenario}`;
  if (!stats.has(k)) {
    stats.set(k, { config: r.config, scenario: r.scenario, runs: [], byRound: new Map(), noteByRound: new Map() });
  }
  const s = stats.get(k);
  s.runs.push(r.m);
  s.byRound.set(r.round, r.m);
  s.noteByRound.set(r.round, r.note.trim());
}
// a configuration's notes in a scenario, one per round that has one
const notesOf = (s) => [...s.noteByRound.values()].filter(Boolean);
for (const s of stats.values()) s.med = [0, 1, 2, 3].map((i) => median(s.runs.map((m) => m[i])));
const of = (scenario) => [...stats.values()].filter((s) => s.scenario === scenario);
// figure i of a over that of b, in each round both ran
const roundRatios = (a, b, i) => {
  const rr = [];
  for (const [round, m] of a.byRound) {
    const n = b.byRound.get(round);
    if (n && Number.isFinite(m[i]) && Number.isFinite(n[i]) && n[i] > 0) rr.push(m[i] / n[i]);
  }
  return rr;
};
const spanOf = (rr) => `${Math.min(...rr).toFixed(2)}–${Math.max(...rr).toFixed(2)}×`;
// a peer's best configuration in a scenario: the highest median m1
const bestOf = (scenario, peer, higher = true) => {
  const c = of(scenario).filter((s) => peerOf(s.config) === peer);
  if (!c.length) return null;
  return c.reduce((a, b) => ((higher ? b.med[0] > a.med[0] : b.med[0] < a.med[0]) ? b : a));
};

const out = [];
const p = (s = '') => out.push(s);
const notes = [];

const HTTP = [
  ['node', 'pass-through to the Node.js origin, 1 KB JSON, c=50'],
  ['node200', 'pass-through to the Node.js origin, 1 KB JSON, c=200'],
  ['static', 'pass-through to the fast origin, 1 KB, c=50'],
  ['static200', 'pass-through to the fast origin, 1 KB, c=200'],
  ['fixed', 'fixed response from the proxy, 1 KB, c=50 (NOT a cache hit)'],
  ['close', 'fixed response, new connection per request (Connection: close), c=50 (NOT a cache hit)'],
];

p('## HTTP (wrk -t2 --latency, keep-alive unless stated)');
p();
p('Each peer at its best worker/thread count (highest median req/s); medians of the rounds. ' +
  'CPU µs/req: utime+stime of all the proxy\'s processes and threads (master and workers, from ' +
  '/proc) over the run, per completed request. Ratios are portico ÷ peer: above 1× is better ' +
  'for req/s, below 1× is better for CPU µs/req and p99.');
p();
p('| scenario | proxy | req/s | p50 ms | p99 ms | CPU µs/req | portico ÷ peer: req/s | CPU µs/req | p99 |');
p('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
// One scenario's rows: each peer at its best, with the ratios to portico.
const peerRows = (sc, title) => {
  const pt = bestOf(sc, 'portico');
  let first = true;
  for (const peer of PEERS) {
    const b = bestOf(sc, peer);
    if (!b) continue;
    const isP = peer === 'portico';
    p(`| ${first ? dated(sc, title) : ''} | ${label(b.config)} | ${fmt(b.med[0])} | ${fmt(b.med[1], 2)} | ` +
      `${fmt(b.med[2], 2)} | ${fmt(b.med[3], 1)} | ${isP || !pt ? '' : ratio(pt.med[0], b.med[0])} | ` +
      `${isP || !pt ? '' : ratio(pt.med[3], b.med[3])} | ${isP || !pt ? '' : ratio(pt.med[2], b.med[2])} |`);
    first = false;
    for (const n of new Set(notesOf(b).map(withoutSteal).filter(Boolean))) {
      notes.push(`${label(b.config)}, ${sc}: wrk reported ${n}`);
    }
  }
};
for (const [sc, title] of HTTP) {
  peerRows(sc, title);
  if (sc === 'static') {
    const d = of('static').find((s) => s.config === 'direct:-');
    if (d) p(`| | ${label(d.config)}, for reference | ${fmt(d.med[0])} | ${fmt(d.med[1], 2)} | ${fmt(d.med[2], 2)} | ` +
      `${fmt(d.med[3], 1)} (the origin's own) | | | |`);
    // The floor: what forwarding the bytes costs with nothing parsed.
    // Its CPU ratio is the least any proxy could reach against a peer.
    const relay = of('static').find((s) => s.config === 'relay:-');
    const peers = PEERS.filter((x) => x !== 'portico').map((x) => bestOf('static', x)).filter(Boolean);
    const cheapest = peers.length ? peers.reduce((a, b) => (b.med[3] < a.med[3] ? b : a)) : null;
    if (relay) p(`| | ${label(relay.config)}, the floor for any proxy | ${fmt(relay.med[0])} | ${fmt(relay.med[1], 2)} | ` +
      `${fmt(relay.med[2], 2)} | ${fmt(relay.med[3], 1)} (the relay's own) | | ` +
      `${cheapest ? `${ratio(relay.med[3], cheapest.med[3])} of ${label(cheapest.config)}` : ''} | |`);
  }
}
p();

// ---- two servers loaded at the same moment (bench/run's *pair scenarios:
// hit256kpair, hitclosepair, staticpair): the ratio within each pair, round
// by round, then medians.
// Each pair: [scenario, config A, name of A, config B, name of B].
const pairOf = (sc, config) => of(sc).find((s) => s.config === config);
const pairsOf = (list, i) => list.map(([sc, ca, na, cb, nb]) => ({ sc, na, nb, a: pairOf(sc, ca), b: pairOf(sc, cb) }))
  .filter((x) => x.a && x.b)
  .map((x) => ({ ...x, rr: roundRatios(x.a, x.b, i) }));
const cellOf = (m) => (m ? `${fmt(m[0])} (${fmt(m[3], 1)})` : 'n/a');
const pairTable = (pairs, i, what) => {
  p(`| round | ${pairs.map((x) => `${x.na} | ${x.nb} | ${x.na} ÷ ${x.nb}${what}`).join(' | ')} |`);
  p(`| --- | ${pairs.map(() => '---: | ---: | ---:').join(' | ')} |`);
  const rounds = [...new Set(pairs.flatMap((x) => [...x.a.byRound.keys()]))].sort((u, v) => u - v);
  for (const rd of rounds) {
    p(`| ${rd} | ${pairs.map((x) => {
      const ma = x.a.byRound.get(rd);
      const mb = x.b.byRound.get(rd);
      const st = stealOf(x.a.noteByRound.get(rd) || '');
      const r = ma && mb && mb[i] > 0 ? `${(ma[i] / mb[i]).toFixed(2)}×` : 'n/a';
      return `${cellOf(ma)} | ${cellOf(mb)} | ${r}${Number.isFinite(st) ? ` [${st} ms]` : ''}`;
    }).join(' | ')} |`);
  }
  p(`| median | ${pairs.map((x) => `${cellOf(x.a.med)} | ${cellOf(x.b.med)} | ` +
    `${x.rr.length ? `**${median(x.rr).toFixed(2)}×**` : 'n/a'}`).join(' | ')} |`);
  p();
  p('The ratios in the median row are medians of the rounds\' ratios. One wrk thread per server ' +
    'leaves each less of the cores than the c=50 rows above, so the rates are not comparable with ' +
    'those; the ratios are.');
  p();
};
// A paired scenario's section, when it has rows: heading (dated by the
// first scenario), the paragraph that says what was loaded, the table.
const pairSection = (list, i, heading, intro, what = '') => {
  const ps = pairsOf(list, i);
  if (!ps.length) return ps;
  p(dated(list[0][0], heading));
  p();
  p(intro);
  p();
  pairTable(ps, i, what);
  return ps;
};
// pass-through (staticpair), the ratio of the CPU per request
const passPairs = pairSection([
  ['staticpair', 'portico:1', 'portico', 'nginx:1', 'nginx'],
  ['staticpairhaproxy', 'portico:1', 'portico', 'haproxy:1', 'HAProxy'],
], 3, '### Pass-through to the fast origin, two servers loaded at the same moment',
'The CPU a proxy spends per pass-through request swings up to 2.5× from one load to the next ' +
  'with the host (bench/NOTES.md, entry 44), so the pass-through rows above, measured one after ' +
  'the other, partly compare the host\'s moments. Here, after the other rounds, portico (1 worker) ' +
  'and nginx (1 worker), then portico and HAProxy (1 thread), are loaded at the same moment on ' +
  '`/static`, each by a wrk thread of its own (`wrk -t1 -c25` each), both in front of the same fast ' +
  'origin. Each cell: req/s (CPU µs/req); the ratio is of the CPU per request; host steal over the ' +
  'pair\'s load in brackets.', ', CPU');

// ---- cache hits
const CACHE = [
  ['hit100', 'cache hit 100 B, c=50'],
  ['hit100_200', 'cache hit 100 B, c=200'],
  ['hit1k', 'cache hit 1 KB, c=50'],
  ['hit1k200', 'cache hit 1 KB, c=200'],
  ['hit256k', 'cache hit 256 KB, c=50'],
  ['hit256k200', 'cache hit 256 KB, c=200'],
  ['hitclose', 'cache hit 1 KB, new connection per request (Connection: close), c=50'],
  ['hitclose200', 'cache hit 1 KB, new connection per request (Connection: close), c=200'],
];
const cacheRan = CACHE.some(([sc]) => of(sc).length || failed.some((f) => f.scenario === sc));
p('## Cache hits (wrk -t2 --latency, keep-alive unless stated)');
p();
if (cacheRan) {
  p('`GET /c100`, `/c1k`, `/c256k` through each proxy\'s cache: the fast origin answers them with ' +
    '`Cache-Control: public, max-age=600` and a Content-Length. Each proxy\'s cache is filled before ' +
    'the loads, and the origin counts the requests it gets: a load during which the origin got more ' +
    'than 0.1% of the requests is not reported (see Notes). Caches: portico `cache: { size: 256m }`; ' +
    'nginx `proxy_cache` (keys_zone, max_size 256m, `proxy_cache_lock on`, the origin\'s Cache-Control ' +
    'honoured); HAProxy `cache` (total-max-size 256 MB, max-object-size 1 MB, `cache-use`/`cache-store`); ' +
    'Varnish its default caching (`return (hash)`, malloc 256 MB). Same columns and ratios as above.');
  p();
  p('| scenario | proxy | req/s | p50 ms | p99 ms | CPU µs/req | portico ÷ peer: req/s | CPU µs/req | p99 |');
  p('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [sc, title] of CACHE) {
    peerRows(sc, title);
    // What the fast origin does answering the same request itself: no
    // proxy, no cache, one epoll thread writing from memory.
    const d = of(sc).find((s) => s.config === 'direct:-');
    if (d) p(`| | ${label(d.config)}, a minimal responder, for reference | ${fmt(d.med[0])} | ${fmt(d.med[1], 2)} | ` +
      `${fmt(d.med[2], 2)} | ${fmt(d.med[3], 1)} (the origin's own) | | | |`);
    const d2 = of(sc).find((s) => s.config === 'direct2:-');
    if (d2) p(`| | ${label(d2.config)}, for reference | ${fmt(d2.med[0])} | ${fmt(d2.med[1], 2)} | ` +
      `${fmt(d2.med[2], 2)} | ${fmt(d2.med[3], 1)} (its own) | | | |`);
  }
} else {
  p(cacheBuilt === '1' ? 'Not measured in this run nor kept from an earlier one (`bench/run --cache`).'
    : 'Not measured: this porticod has no cache (`cache:` is rejected).');
}
p();

// 256 KB hits (hit256kpair)
const pairs = pairSection([
  ['hit256kpair', 'portico:1', 'portico', 'nginx:1', 'nginx'],
  ['hit256kpairref', 'direct:-', 'the responder', 'nginx:1', 'nginx'],
], 0, '### Cache hit 256 KB, two servers loaded at the same moment',
'A server\'s speed on the 256 KB row swings up to 3× from one load to the next with the host ' +
  '(bench/NOTES.md, entries 39 and 41), so rows measured one after the other partly compare the ' +
  'host\'s moments. Here, after the other rounds, portico (1 worker) and nginx (1 worker) are loaded ' +
  'at the same moment, each by a wrk thread of its own (`wrk -t1 -c25` each), then the do-nothing ' +
  'responder (`bench/origin.c`, one process, copying the answer from memory) and nginx likewise. ' +
  'Whatever the host does to the cores during a load, it does to both servers of the pair. ' +
  'Each cell: req/s (CPU µs/req); host steal over the pair\'s load in brackets.');
// hits with a new connection per request (hitclosepair)
const closePairs = pairSection([['hitclosepair', 'portico:1', 'portico', 'haproxy:1', 'HAProxy']], 0,
  '### Cache hit 1 KB, new connection per request, two servers loaded at the same moment',
  'The same for the new-connection line, which asks for HAProxy\'s rate: after the other rounds, ' +
  'portico (1 worker) and HAProxy (1 thread) are loaded at the same moment with `GET /c1k` and ' +
  '`Connection: close`, each by a wrk thread of its own (`wrk -t1 -c25` each). Each cell: req/s ' +
  '(CPU µs/req); host steal over the pair\'s load in brackets.');

// ---- the same c=200 loads at a fixed rate (bench/pace.c)
const PACED = [
  ['static200r', 'pass-through to the fast origin, 1 KB, c=200', 'static200'],
  ['node200r', 'pass-through to the Node.js origin, 1 KB JSON, c=200', 'node200'],
  ['hit100_200r', 'cache hit 100 B, c=200', 'hit100_200'],
  ['hit1k200r', 'cache hit 1 KB, c=200', 'hit1k200'],
  ['hit256k200r', 'cache hit 256 KB, c=200', 'hit256k200'],
];
// the planned rate, from the note run_pace writes ("planned N/s; ...")
const plannedOf = (sc) => {
  for (const s of of(sc)) for (const n of notesOf(s)) {
    const m = /^planned (\d+)\/s/.exec(n);
    if (m) return Number(m[1]);
  }
  return NaN;
};
// a peer's best configuration at a fixed rate: the lowest median p99
const calmestOf = (sc, peer) => {
  const c = of(sc).filter((s) => peerOf(s.config) === peer);
  return c.length ? c.reduce((a, b) => (b.med[2] < a.med[2] ? b : a)) : null;
};
if (PACED.some(([sc]) => of(sc).length)) {
  p('## The c=200 loads at a fixed rate (bench/pace.c)');
  p();
  p('wrk sends each connection\'s next request as soon as the answer comes, so the rate climbs ' +
    'until the two cores are full, and on a machine the load generator shares its p99 measures ' +
    'how the scheduler shares the cores (bench/NOTES.md, entry 36). Here `bench/pace.c` holds the ' +
    'rate instead: 200 keep-alive connections, requests evenly spaced at a rate fixed before the ' +
    `load, the same for every configuration: ${paceShare}× the best peer's median req/s in the wrk ` +
    'rows above, rounded down to 1,000. A request is timed from its planned moment when its ' +
    'connection was still waiting for the previous answer then (the server\'s delay counts), ' +
    'otherwise from its send. req/s is the answers completed within the load, per second: below ' +
    'the planned rate, the proxy fell behind. Each peer at its configuration with the lowest median p99.');
  p();
  p('| scenario | proxy | req/s | p50 ms | p99 ms | CPU µs/req | portico ÷ peer: p99 | CPU µs/req |');
  p('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [sc, title] of PACED) {
    const pt = calmestOf(sc, 'portico');
    const rate = plannedOf(sc);
    let first = true;
    for (const peer of PEERS) {
      const b = calmestOf(sc, peer);
      if (!b) continue;
      const isP = peer === 'portico';
      p(`| ${first ? dated(sc, `${title}, ${fmt(rate)} req/s planned`) : ''} | ${label(b.config)} | ` +
        `${fmt(b.med[0])} | ${fmtMs(b.med[1])} | ${fmtMs(b.med[2])} | ${fmt(b.med[3], 1)} | ` +
        `${isP || !pt ? '' : ratio(pt.med[2], b.med[2])} | ${isP || !pt ? '' : ratio(pt.med[3], b.med[3])} |`);
      first = false;
      // run_pace's notes, one per round, summed up: lost requests, and
      // pace's own lateness where the proxy left it little CPU
      const sum = (re) => {
        const v = notesOf(b).map((n) => re.exec(n)).filter(Boolean).map((m) => Number(m[1]));
        return { rounds: v.length, total: v.reduce((x, y) => x + y, 0), most: Math.max(0, ...v) };
      };
      const errs = sum(/(\d+) errors/), never = sum(/(\d+) requests never sent/);
      const late = sum(/up to ([\d.]+) ms late/);
      const of5 = (x) => `in ${x.rounds} of ${b.runs.length} rounds`;
      const said = [];
      if (errs.rounds) said.push(`${fmt(errs.total)} requests failed (${of5(errs)})`);
      if (never.rounds) said.push(`${fmt(never.total)} planned requests were never sent, their connection still waiting (${of5(never)})`);
      if (late.rounds) said.push(`pace itself sent late by up to ${late.most.toFixed(2)} ms at p99 (${of5(late)}; ` +
        'left out of the latencies): the proxy left it little CPU');
      if (said.length) notes.push(`${label(b.config)}, ${sc}: ${said.join('; ')}.`);
    }
  }
  p();
}

// Each round's p99 of the c=200 loads (the p99 targets), beside the time
// the host took from the cores during that load: a p99 far from the
// configuration's others, in a round where the host took time, is the
// host's stall and not the proxy's tail.
const P99_ROWS = [...HTTP, ...CACHE, ...PACED].map(([sc]) => sc).filter((sc) => /200r?$/.test(sc));
const stealRows = P99_ROWS.flatMap((sc) => of(sc).filter((x) => PEERS.includes(peerOf(x.config))));
if (stealRows.some((x) => notesOf(x).some((n) => Number.isFinite(stealOf(n))))) {
  const rounds = [...new Set(stealRows.flatMap((x) => [...x.byRound.keys()]))].sort((a, b) => a - b);
  p('### The c=200 p99s round by round, and the host');
  p();
  p('p99 of each round in ms, and in brackets the time the host took from the two cores during that load ' +
    '(ms, the steal column of /proc/stat, in steps of 10 ms): a virtual core the host runs something else on ' +
    'stalls whatever runs on it, the proxy, the origin or the load generator.');
  p();
  p(`| scenario | configuration | ${rounds.map((r) => `round ${r}`).join(' | ')} |`);
  p(`| --- | --- | ${rounds.map(() => '---:').join(' | ')} |`);
  for (const x of stealRows) {
    const cells = rounds.map((r) => {
      const m = x.byRound.get(r);
      if (!m) return '';
      const st = stealOf(x.noteByRound.get(r) ?? '');
      return `${fmtMs(m[2])}${Number.isFinite(st) ? ` (${st})` : ''}`;
    });
    p(`| ${x.scenario} | ${label(x.config)} | ${cells.join(' | ')} |`);
  }
  p();
}

// ---- the c=200 p99s of portico and each peer loaded at the same moment
// (bench/run's p99pair): one wrk thread each at c=200 (p99pair_LINE_PEER),
// then one pace thread each at the same fixed rate (p99pairr_LINE_PEER).
// The ratio is of the p99s, the median of the rounds' ratios.
const P99_LINES = [
  ['hit100_200', 'cache hit 100 B', '/c100'],
  ['hit1k200', 'cache hit 1 KB', '/c1k'],
  ['hit256k200', 'cache hit 256 KB', '/c256k'],
  ['hitclose200', 'cache hit 1 KB, new connection per request', '/c1k, Connection: close'],
  ['static200', 'pass-through to the fast origin', '/static'],
  ['node200', 'pass-through to the Node.js origin', '/json'],
];
const PEER_NAME = { nginx: 'nginx', haproxy: 'HAProxy', varnish: 'Varnish' };
const p99PairsOf = (kind) => P99_LINES.map(([line, title, path]) => ({
  line, title, path,
  pairs: PEERS.slice(1).map((peer) => {
    const sc = `${kind}_${line}_${peer}`;
    const a = of(sc).find((x) => peerOf(x.config) === 'portico');
    const b = of(sc).find((x) => peerOf(x.config) === peer);
    return a && b ? { sc, peer, a, b, rr: roundRatios(a, b, 2) } : null;
  }).filter((x) => x && x.rr.length),
})).filter((x) => x.pairs.length);
const P99_PAIRED = p99PairsOf('p99pair');
const P99_PACED = p99PairsOf('p99pairr');
const p99Table = (lines, cell, extra = () => '') => {
  p('| scenario | path | peer | portico | peer | portico ÷ peer, p99 | by round | rounds at 1× or less |');
  p('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const l of lines) {
    l.pairs.forEach((x, k) => {
      p(`| ${k ? '' : l.title} | ${k ? '' : `\`${l.path}\``} | ${label(x.b.config)}${extra(x)} | ${cell(x.a)} | ` +
        `${cell(x.b)} | ${median(x.rr).toFixed(2)}× | ${spanOf(x.rr)} | ` +
        `${x.rr.filter((v) => v <= 1).length} of ${x.rr.length} |`);
    });
  }
  p();
};
// the planned rates of a paced pair's rounds (the note: "planned N/s; ...")
const plannedSpan = (s) => {
  const v = notesOf(s).map((n) => /^planned (\d+)\/s/.exec(n)).filter(Boolean).map((m) => Number(m[1]));
  if (!v.length) return '';
  const lo = Math.min(...v), hi = Math.max(...v);
  return `, ${lo === hi ? fmt(lo) : `${fmt(lo)}–${fmt(hi)}`} req/s planned`;
};
if (P99_PAIRED.length || P99_PACED.length) {
  const first = (P99_PAIRED[0] || P99_PACED[0]).pairs[0].sc;
  p(dated(first, '### The c=200 p99s, two servers loaded at the same moment'));
  p();
  p('Under `wrk -t2 -c200` the server that answers more leaves its load generator less of the two ' +
    'cores, and the p99 wrk reports grows with that server\'s rate (bench/NOTES.md, entries 36-38). ' +
    'Here, after the other rounds, portico (1 worker) and each peer (1 worker or thread; Varnish its ' +
    'default pools, which use both cores) are loaded at the same moment on the path of each c=200 ' +
    'line, 200 connections each: first by a wrk thread each (`wrk -t1 -c200`), then by a ' +
    '`bench/pace.c` thread each at one fixed rate for both, a third of the slower one\'s rate in ' +
    'the wrk load just before (not for the new-connection line: pace keeps its connections). ' +
    'Under wrk the faster server still keeps its own wrk thread busier; at a fixed rate both load ' +
    'generators do the same work. The Node.js line shares one Node.js process, which both proxies ' +
    'saturate under wrk. Each cell: p99 ms (req/s), medians of the rounds; the ratio is the median ' +
    'of the rounds\' ratios of the p99s, below 1× better for portico.');
  p();
  if (P99_PAIRED.length) {
    p('Under wrk:');
    p();
    p99Table(P99_PAIRED, (s) => `${fmtMs(s.med[2])} (${fmt(s.med[0])})`);
  }
  if (P99_PACED.length) {
    p('At a fixed rate:');
    p();
    p99Table(P99_PACED, (s) => fmtMs(s.med[2]), (x) => plannedSpan(x.a));
  }
}

p('### Every configuration');
p();
p('| scenario | configuration | req/s | p50 ms | p99 ms | CPU µs/req | rounds |');
p('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const [sc] of [...HTTP, ...CACHE, ...PACED]) {
  for (const s of of(sc).filter((x) => PEERS.includes(peerOf(x.config)))) {
    p(`| ${sc} | ${label(s.config)} | ${fmt(s.med[0])} | ${fmt(s.med[1], 2)} | ${fmt(s.med[2], 2)} | ` +
      `${fmt(s.med[3], 1)} | ${s.runs.length} |`);
  }
}
p();

// ---- idle connections
const heavyPeers = (sc) => PEERS.map((peer) => bestOf(sc, peer)).filter(Boolean);
const pIdle = bestOf('idle', 'portico');
if (of('idle').length) {
  p(`## ${dated('idle', `Memory per idle keep-alive connection (${idleN} connections)`)}`);
  p();
  p(`${idleN} connections each send one \`GET /fixed\`, read the answer and stay open, idle. ` +
    'Resident memory of all the proxy\'s processes (VmRSS from /proc) before and after, difference ÷ connections. ' +
    'Kernel socket buffers are not in RSS and not counted.');
  p();
  p('| proxy | bytes per connection | RSS before, kB | RSS with the connections, kB | portico ÷ peer |');
  p('| --- | ---: | ---: | ---: | ---: |');
  for (const b of heavyPeers('idle')) {
    p(`| ${label(b.config)} | ${fmt(b.med[0])} | ${fmt(b.med[1])} | ${fmt(b.med[2])} | ` +
      `${peerOf(b.config) === 'portico' || !pIdle ? '' : ratio(pIdle.med[0], b.med[0])} |`);
  }
  p();
}

// ---- transfers
if (of('upload').length || of('download').length) {
  p(`## ${dated(runOf.has('upload') ? 'upload' : 'download', `${xferMb >= 1024 ? `${xferMb / 1024} GB` : `${xferMb} MB`} upload and download (curl, one request)`)}`);
  p();
  p('Upload: `PUT /upload` of a file, streamed to the Node.js origin, which discards it. ' +
    'Download: `GET /download`, streamed from the Node.js origin. Peak RSS: the largest sum of the ' +
    'proxy\'s processes\' VmRSS, sampled every 50 ms. CPU: the proxy\'s CPU seconds per GB.');
  p();
  p('| proxy | upload MB/s | peak RSS MB | CPU s/GB | download MB/s | peak RSS MB | CPU s/GB | portico ÷ peer: up MB/s | down MB/s |');
  p('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const pu = bestOf('upload', 'portico'), pd = bestOf('download', 'portico');
  for (const peer of PEERS) {
    const u = bestOf('upload', peer), d = bestOf('download', peer);
    if (!u && !d) continue;
    const cfg = (u || d).config, isP = peer === 'portico';
    p(`| ${label(cfg)} | ${fmt(u?.med[0])} | ${fmt(u?.med[1])} | ${fmt(u?.med[3], 2)} | ` +
      `${fmt(d?.med[0])} | ${fmt(d?.med[1])} | ${fmt(d?.med[3], 2)} | ` +
      `${isP ? '' : ratio(pu?.med[0], u?.med[0])} | ${isP ? '' : ratio(pd?.med[0], d?.med[0])} |`);
  }
  p();
}

// ---- WebSocket, SSE
const realtime = [
  ['ws', `WebSocket echo (${wsC} connections, 64-byte messages, one in flight each)`, 'messages/s', 'round trip'],
  ['sse', `${sseN} concurrent SSE streams (an event every 100 ms on each)`, 'events/s', 'delivery lag'],
];
for (const [sc, title, unit, lat] of realtime) {
  if (!of(sc).length) continue;
  const pt = bestOf(sc, 'portico');
  p(`## ${dated(sc, title)}`);
  p();
  if (sc === 'sse') {
    p('Lag: from the origin\'s write of an event (its timestamp is the event) to the client\'s read, ' +
      'through the proxy. Both the origin and the client are Node.js; they set the floor.');
  } else {
    p('Client and echo server are Node.js (the `ws` package); they, not the proxy, set the rate. ' +
      'Varnish tunnels the upgrade with `return (pipe)`.');
  }
  p();
  p(`| proxy | ${unit} | p50 ${lat} ms | p99 ${lat} ms | CPU µs per message | portico ÷ peer: rate | CPU |`);
  p('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const b of heavyPeers(sc)) {
    const isP = peerOf(b.config) === 'portico';
    p(`| ${label(b.config)} | ${fmt(b.med[0])} | ${fmt(b.med[1], 2)} | ${fmt(b.med[2], 2)} | ${fmt(b.med[3], 1)} | ` +
      `${isP || !pt ? '' : ratio(pt.med[0], b.med[0])} | ${isP || !pt ? '' : ratio(pt.med[3], b.med[3])} |`);
  }
  p();
}

// ---- the targets of issue 7, read off the rows above.  Each side at its
// own best configuration for the figure compared: the highest req/s, the
// lowest CPU per request, the lowest p99.
const ours = (sc) => of(sc).filter((s) => peerOf(s.config) === 'portico');
const theirs = (sc, peer) => of(sc).filter((s) => (peer ? peerOf(s.config) === peer
  : PEERS.includes(peerOf(s.config)) && peerOf(s.config) !== 'portico'));
const best = (list, i, lower = false) => (list.length
  ? list.reduce((a, b) => ((lower ? b.med[i] < a.med[i] : b.med[i] > a.med[i]) ? b : a)) : null);
const TARGETS = [
  // [target, scenario, figure index, lower is better, peer (null: the best of all), limit]
  ['cache hit 1 KB, c=50: req/s ≥ 1.15× the best peer\'s', 'hit1k', 0, false, null, 1.15],
  ['cache hit 1 KB, c=50: CPU per request ≤ 0.85× the best peer\'s', 'hit1k', 3, true, null, 0.85],
  ['cache hit 256 KB: req/s ≥ 1.3× nginx\'s', 'hit256k', 0, false, 'nginx', 1.3],
  ['pass-through to the fast origin, c=50: CPU per request ≤ 0.85× the best peer\'s', 'static', 3, true, null, 0.85],
  ['new connection per request: req/s ≥ HAProxy\'s', 'hitclose', 0, false, 'haproxy', 1],
  ['cache hit 1 KB, c=200: p99 no worse than the best peer\'s', 'hit1k200', 2, true, null, 1],
  ['pass-through, c=200: p99 no worse than the best peer\'s', 'static200', 2, true, null, 1],
  ['cache hit 100 B, c=200: p99 no worse than the best peer\'s', 'hit100_200', 2, true, null, 1],
  ['cache hit 256 KB, c=200: p99 no worse than the best peer\'s', 'hit256k200', 2, true, null, 1],
  ['cache hit 1 KB, new connection per request, c=200: p99 no worse than the best peer\'s', 'hitclose200', 2, true, null, 1],
  ['pass-through to the Node.js origin, c=200: p99 no worse than the best peer\'s', 'node200', 2, true, null, 1],
  ['cache hit 1 KB, c=200, at a fixed rate: p99 no worse than the best peer\'s', 'hit1k200r', 2, true, null, 1],
  ['pass-through, c=200, at a fixed rate: p99 no worse than the best peer\'s', 'static200r', 2, true, null, 1],
  ['cache hit 100 B, c=200, at a fixed rate: p99 no worse than the best peer\'s', 'hit100_200r', 2, true, null, 1],
  ['cache hit 256 KB, c=200, at a fixed rate: p99 no worse than the best peer\'s', 'hit256k200r', 2, true, null, 1],
  ['pass-through to the Node.js origin, c=200, at a fixed rate: p99 no worse than the best peer\'s', 'node200r', 2, true, null, 1],
];
const unit = ['req/s', '', 'ms p99', 'µs/req'];
const fig = (s, i) => `${i === 2 ? fmtMs(s.med[2]) : fmt(s.med[i], i === 0 ? 0 : 1)} ${unit[i]}, ${label(s.config)}`;
const targetRows = [];
for (const [what, sc, i, lower, peer, limit] of TARGETS) {
  const a = best(ours(sc), i, lower);
  // the best peer: for a CPU target, the peer with the most req/s, at its
  // lowest CPU; otherwise the best figure of any peer (or of the one named)
  let b;
  if (i === 3 && !peer) {
    const top = best(theirs(sc), 0);
    b = top && best(theirs(sc, peerOf(top.config)), 3, true);
  } else {
    b = best(theirs(sc, peer), i, lower);
  }
  if (!a || !b) continue;
  const r = a.med[i] / b.med[i];
  const meets = (x) => (lower ? x <= limit : x >= limit);
  // the same two configurations round by round: how far the verdict
  // stands from this machine's noise
  const rr = roundRatios(a, b, i);
  const span = rr.length ? `${spanOf(rr)}, met in ${rr.filter(meets).length} of ${rr.length}` : '';
  targetRows.push(`| ${dated(sc, what)} | ${fig(a, i)} | ${fig(b, i)} | ${r.toFixed(3)}× | ${span} | ` +
    `${meets(r) ? 'met' : '**not met**'} |`);
}
const idle = best(ours('idle'), 0, true);
if (idle) targetRows.push(`| ${dated('idle', 'memory per idle keep-alive connection ≤ 500 B')} | ` +
  `${fmt(idle.med[0])} B, ${label(idle.config)} | | | | ${idle.med[0] <= 500 ? 'met' : '**not met**'} |`);
if (targetRows.length) {
  p('## The targets of issue 7');
  p();
  p('Read off the tables above; each side at its own best configuration for the figure compared ' +
    '(highest req/s, lowest CPU per request, lowest p99). For a CPU target the best peer is the one ' +
    'with the most req/s, taken at its lowest CPU. The ratio is of the medians; "by round" is the ' +
    'same two configurations\' ratio in each round on its own (lowest–highest) and in how many ' +
    'rounds it met the line: a verdict the rounds split on is within this machine\'s noise.');
  p();
  p('| target | portico | peer | ratio | by round | |');
  p('| --- | --- | --- | ---: | --- | --- |');
  for (const l of targetRows) p(l);
  p();
  // The do-nothing responder using both cores (one read and one write
  // per request, the answer from memory) against the same best peer, in
  // the same rounds.  A reference, not a ceiling: it writes each answer
  // as soon as it has read the request, and where that costs a switch
  // to the load generator per answer a proxy that writes at the end of
  // its turn outruns it (bench/NOTES.md, entry 35).
  const ref = of('hit1k').find((s) => s.config === 'direct2:-');
  const top = best(theirs('hit1k'), 0);
  const mine = best(ours('hit1k'), 0);
  if (ref && top && mine) {
    const rr = roundRatios(ref, top, 0);
    p(`For reference, ${label(ref.config)} (\`bench/origin.c\`: no proxy, no cache, the ` +
      `answer written from memory) did ${fmt(ref.med[0])} req/s at c=50, ${(ref.med[0] / top.med[0]).toFixed(3)}× ` +
      `${label(top.config)}'s${rr.length ? ` (by round ${spanOf(rr)})` : ''}. portico's ${fmt(mine.med[0])} req/s ` +
      `(${label(mine.config)}) is ${(mine.med[0] / ref.med[0]).toFixed(3)}× the responder's.`);
    p();
  }
  // The 256 KB line against a server that does nothing but send the
  // body, in the same rounds: the responder copies it from memory (the
  // cheaper way here, entry 43) and does less per request than any
  // proxy, so its median against nginx's says what the line asks of this
  // machine.  Not a ceiling round by round: every server's speed on this
  // row swings up to 3x between loads (bench/NOTES.md, entry 39).
  const big = best(of('hit256k').filter((s) => ['direct', 'direct2'].includes(peerOf(s.config))), 0);
  const bigPeer = best(theirs('hit256k', 'nginx'), 0);
  const bigMine = best(ours('hit256k'), 0);
  if (big && bigPeer && bigMine) {
    const rr = roundRatios(big, bigPeer, 0);
    const r = big.med[0] / bigPeer.med[0];
    const procs = peerOf(big.config) === 'direct2' ? 'two processes' : 'one process';
    p(`For the 256 KB line: the do-nothing responder (\`bench/origin.c\`, ${procs}), ` +
      'which copies the answer from memory into the socket and does nothing else, did ' +
      `${fmt(big.med[0])} req/s at c=50, ${r.toFixed(3)}× ${label(bigPeer.config)}'s` +
      `${rr.length ? ` (by round ${spanOf(rr)})` : ''}` +
      `, ${r < 1.3 ? 'under' : 'over'} the 1.3× the line asks for. ` +
      `portico's ${fmt(bigMine.med[0])} req/s (${label(bigMine.config)}) is ` +
      `${(bigMine.med[0] / big.med[0]).toFixed(3)}× the responder's.`);
    p();
  }
  if (pairs.some((x) => x.rr.length)) {
    p('Loaded at the same moment as nginx (the 256 KB paired table above), ' +
      `${pairs.filter((x) => x.rr.length).map((x) => `${x.na} did ${median(x.rr).toFixed(2)}× nginx's rate (rounds ${spanOf(x.rr)}, ` +
        `${x.rr.filter((v) => v >= 1.3).length} of ${x.rr.length} at 1.3× or more)`).join(', and ')}.`);
    p();
  }
  if (closePairs.some((x) => x.rr.length)) {
    const x = closePairs[0];
    p(`New connection per request, loaded at the same moment as HAProxy (the new-connection paired table above), portico did ` +
      `${median(x.rr).toFixed(2)}× HAProxy's rate (rounds ${spanOf(x.rr)}, ${x.rr.filter((v) => v >= 1).length} of ` +
      `${x.rr.length} at 1× or more).`);
    p();
  }
  const p99Said = (lines) => lines.map((l) => `${l.title}, ${l.pairs.map((x) => `${median(x.rr).toFixed(2)}× ` +
    `${PEER_NAME[x.peer]}'s (${x.rr.filter((v) => v <= 1).length}/${x.rr.length})`).join(', ')}`).join('; ');
  if (P99_PAIRED.length || P99_PACED.length) {
    p('The c=200 p99 lines, loaded at the same moment as each peer (the paired p99 tables above), ' +
      'portico\'s p99 against the peer\'s (median of the rounds\' ratios; rounds at 1× or less)' +
      `${P99_PACED.length ? `, at one fixed rate for both: ${p99Said(P99_PACED)}` : ''}` +
      `${P99_PAIRED.length ? `${P99_PACED.length ? '. Under wrk' : ', under wrk'}: ${p99Said(P99_PAIRED)}` : ''}.`);
    p();
  }
  if (passPairs.some((x) => x.rr.length)) {
    p('Pass-through, loaded at the same moment (the pass-through paired table above), portico spent ' +
      `${passPairs.filter((x) => x.rr.length).map((x) => `${median(x.rr).toFixed(2)}× ${x.nb}'s CPU per request (rounds ${spanOf(x.rr)}, ` +
        `${x.rr.filter((v) => v <= 0.85).length} of ${x.rr.length} at 0.85× or less)`).join(', and ')}.`);
    p();
  }
}

// ---- notes
p('## Notes');
p();
for (const f of failed) {
  p(`- **${label(f.config)}, ${f.scenario}, round ${f.round}: ${f.note}** — the proxy did not serve ` +
    'these from its cache; the load is left out of the table.');
}
if (runOf.size) {
  const byRun = new Map();
  for (const [sc, r] of runOf) byRun.set(r, [...(byRun.get(r) || []), sc]);
  p(`- Rows kept from earlier runs (not re-measured in this one): ${[...byRun].map(([r, scs]) => `${scs.join(', ')} (run of ${r})`).join('; ')}. ` +
    'Ratios between rows of different runs are not made: every ratio is within one scenario, so within one run.');
}
p('- The "fixed response" rows measure each engine without an origin (portico `respond:`, nginx ' +
  '`return 200`, HAProxy `http-request return`, Varnish `synth`). They are **not cache hits**.');
p('- Fast origin: `bench/origin.c`, a one-thread epoll responder answering every request head with ' +
  'the same 1 KB JSON. Node.js origin: `bench/origin.mjs` (node\'s http; ws for WebSocket). ' +
  'Under the 1 KB and 256 KB hit rows, the same responder answers `/c1k` and `/c256k` itself, ' +
  'as one process and as two (one listening socket each, `SO_REUSEPORT`): a server that only reads ' +
  'the request and writes the answer from memory, with one or both cores, for reference; the 256 KB ' +
  'answer is copied whole into the socket. portico\'s cache copies too, until a worker has copied ' +
  '`cache.sendfile`\'s bytes in one loop turn, then sends the rest of the turn\'s big hits with ' +
  '`sendfile` (bench/NOTES.md entries 43, 46).');
p('- Access logs are off for every peer; upstream keep-alive is on for every peer ' +
  '(configs in `bench/conf/`). portico adds X-Forwarded-For, Via and an X-Request-Id to each ' +
  'proxied request; nginx and HAProxy add X-Forwarded-For, Varnish X-Forwarded-For and X-Varnish.');
p('- portico and nginx run with 1 and 2 worker processes, HAProxy with 1 and 2 threads; each is ' +
  'reported at its best per scenario. The idle, transfer, WebSocket and SSE scenarios run on the ' +
  '1-worker / 1-thread configurations only. Varnish runs its default 2 thread pools.');
p('- Configurations run interleaved (portico, nginx, HAProxy, Varnish, then again) in each round.');
if (idleWanted && idleWanted !== idleN) {
  notes.push(`Idle connections: ${idleN}, not ${idleWanted}: the open-files limit here is ${nofile} and cannot be ` +
    'raised; HAProxy reserves two descriptors per connection and will not start with a maxconn that does not fit, ' +
    'so every peer is measured with the same, smaller count.');
}
if (haveWs !== '1') notes.push('WebSocket: n/a for every peer: the `ws` package is missing (run ./bootstrap).');
if (quick === '1') {
  notes.push(runOf.size ? 'This run is a --quick run (1 round, short loads): its rows (those not marked as kept from an earlier run) are for development, not for quoting.'
    : 'This is a --quick run (1 round, short loads, smaller transfers): for development, not for quoting.');
}
for (const sc of [...[...HTTP, ...PACED, ...CACHE].map(([sc]) => sc), 'idle', 'upload', 'download', 'ws', 'sse']) {
  const seen = new Set(of(sc).map((s) => peerOf(s.config)));
  if (!of(sc).length) continue;
  for (const peer of PEERS) if (!seen.has(peer)) notes.push(`${sc}: n/a for ${peer} (no successful run; see bench/run's log)`);
}
for (const n of notes) p(`- ${n}`);
process.stdout.write(out.join('\n') + '\n');

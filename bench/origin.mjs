// origin.mjs -- the Node.js origin of the benchmark.
//   GET  /json (any other path)  1 KB JSON (the same bytes as the fast origin)
//   PUT  /upload                 reads and discards the body, answers its length
//   GET  /download?bytes=N       N bytes, streamed with back-pressure
//   GET  /sse                    text/event-stream; every 100 ms each stream gets
//                                "data: <send time in ms since the epoch>"
//   GET  /ws (Upgrade)           WebSocket echo (the ws package of the tests)
// Usage: node origin.mjs PORT BODYFILE WS_MODULE_DIR
import http from 'node:http';
import fs from 'node:fs';
import { createRequire } from 'node:module';

const [port, bodyFile, wsDir] = process.argv.slice(2);
const body = fs.readFileSync(bodyFile);
const chunk = Buffer.alloc(1 << 20, 120);
const now = () => performance.timeOrigin + performance.now();

let WebSocketServer = null;
try {
  ({ WebSocketServer } = createRequire(wsDir + '/')('ws'));
} catch { /* no ws: the ws scenario is reported n/a by bench/run */ }

const streams = new Set();
setInterval(() => {
  for (const res of streams) res.write(`data: ${now().toFixed(3)}\n\n`);
}, 100);

const server = http.createServer((req, res) => {
  const url = req.url;
  if (url.startsWith('/upload')) {
    let n = 0;
    req.on('data', (d) => { n += d.length; });
    req.on('end', () => res.end(`${n}\n`));
    return;
  }
  if (url.startsWith('/download')) {
    let left = Number(new URL(url, 'http://x').searchParams.get('bytes')) || 0;
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': left });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        const ok = res.write(n === chunk.length ? chunk : chunk.subarray(0, n));
        if (!ok) { res.once('drain', pump); return; }
      }
      res.end();
    };
    pump();
    return;
  }
  if (url.startsWith('/sse')) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.write(': hi\n\n');
    streams.add(res);
    res.on('close', () => streams.delete(res));
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 121000;
server.requestTimeout = 0;
server.maxHeadersCount = 0;

if (WebSocketServer) {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });
}
server.listen(Number(port), '127.0.0.1', () => console.log('origin ready'));

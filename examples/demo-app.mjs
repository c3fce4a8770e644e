// demo-app.mjs -- the small Node.js app the README's demo puts portico in
// front of, on 127.0.0.1:3000 (PORT to change it): a JSON API on every
// path, and Server-Sent Events on /events.
import http from 'node:http';

const port = Number(process.env.PORT || 3000);
let hits = 0;

function events(req, res) {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  let n = 0;
  const timer = setInterval(() => {
    n++;
    res.write(`id: ${n}\ndata: ${JSON.stringify({ n, time: new Date().toISOString() })}\n\n`);
  }, 1000);
  req.on('close', () => clearInterval(timer));
}

const server = http.createServer((req, res) => {
  hits++;
  if (req.url.startsWith('/events')) return events(req, res);
  const body = JSON.stringify({
    app: 'portico demo',
    method: req.method,
    url: req.url,
    hits,
    forwardedFor: req.headers['x-forwarded-for'] || null,
    requestId: req.headers['x-request-id'] || null,
    time: new Date().toISOString(),
  }) + '\n';
  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    // /cached/... may be kept 10 s by a shared cache
    ...(req.url.startsWith('/cached/') ? { 'Cache-Control': 's-maxage=10' } : {}),
  });
  res.end(body);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`demo app listening on http://127.0.0.1:${port}`);
});

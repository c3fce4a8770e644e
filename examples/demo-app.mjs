// demo-app.mjs -- the small Node.js app the README's demo puts portico in
// front of: a JSON API on 127.0.0.1:3000 (PORT to change it).
import http from 'node:http';

const port = Number(process.env.PORT || 3000);
let hits = 0;

const server = http.createServer((req, res) => {
  hits++;
  const body = JSON.stringify({
    app: 'portico demo',
    method: req.method,
    url: req.url,
    hits,
    time: new Date().toISOString(),
  }) + '\n';
  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`demo app listening on http://127.0.0.1:${port}`);
});

// 030-bad-input: malformed requests get a clear 4xx/5xx with
// "Connection: close", the connection is closed, and nothing after the bad
// request on that connection is ever answered.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { baseConfig, parseOne, parseResponses, rawRequest, RawConn,
  startPortico } from './lib/harness.mjs';

const H = 'Host: a.example\r\n';

// [name, raw request, expected status]
const CASES = [
  ['Content-Length and Transfer-Encoding together',
    `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ['two differing Content-Length fields',
    `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 400],
  ['differing Content-Length list',
    `POST / HTTP/1.1\r\n${H}Content-Length: 5, 6\r\n\r\nhello!`, 400],
  ['non-numeric Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: abc\r\n\r\n`, 400],
  ['negative Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, 400],
  ['signed Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`, 400],
  ['huge Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\n`, 400],
  ['Transfer-Encoding not ending in chunked',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n`, 400],
  ['Transfer-Encoding: chunked, gzip', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n`, 400],
  ['Transfer-Encoding: gzip, chunked -> 501',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501],
  ['Transfer-Encoding in HTTP/1.0',
    'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['obs-fold', `GET / HTTP/1.1\r\n${H}X-Long: first\r\n second\r\n\r\n`, 400],
  ['space before colon', 'GET / HTTP/1.1\r\nHost : a.example\r\n\r\n', 400],
  ['bare CR inside a field value', `GET / HTTP/1.1\r\n${H}X-A: b\rc\r\n\r\n`, 400],
  ['bare LF ending one field line', `GET / HTTP/1.1\r\n${H}X-A: b\nX-B: c\r\n\r\n`, 400],
  ['bare LF line endings throughout', 'GET / HTTP/1.1\nHost: a.example\n\n', 400],
  ['NUL in a header value', `GET / HTTP/1.1\r\n${H}X-A: b\x00c\r\n\r\n`, 400],
  ['control character in a header value', `GET / HTTP/1.1\r\n${H}X-A: b\x01c\r\n\r\n`, 400],
  ['DEL in a header value', `GET / HTTP/1.1\r\n${H}X-A: b\x7fc\r\n\r\n`, 400],
  ['empty header name', `GET / HTTP/1.1\r\n${H}: nothing\r\n\r\n`, 400],
  ['invalid byte in header name', `GET / HTTP/1.1\r\n${H}X(A): b\r\n\r\n`, 400],
  ['bad method token', `G(T / HTTP/1.1\r\n${H}\r\n`, 400],
  ['TLS handshake bytes as the method', `\x16\x03\x01\x00 / HTTP/1.1\r\n${H}\r\n`, 400],
  ['target without leading slash', `GET foo HTTP/1.1\r\n${H}\r\n`, 400],
  ['fragment in the target', `GET /a#frag HTTP/1.1\r\n${H}\r\n`, 400],
  ['space inside the target', `GET /a b HTTP/1.1\r\n${H}\r\n`, 400],
  ['asterisk target without OPTIONS', `GET * HTTP/1.1\r\n${H}\r\n`, 400],
  ['missing Host in HTTP/1.1', 'GET / HTTP/1.1\r\nX-A: b\r\n\r\n', 400],
  ['two Host fields', `GET / HTTP/1.1\r\n${H}Host: b.example\r\n\r\n`, 400],
  ['invalid Host value', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 400],
  ['HTTP/2.0 -> 505', `GET / HTTP/2.0\r\n${H}\r\n`, 505],
  ['HTTP/1.2 -> 505', `GET / HTTP/1.2\r\n${H}\r\n`, 505],
  ['malformed version', `GET / HTTX/1.1\r\n${H}\r\n`, 400],
  ['HTTP/0.9 style request line', 'GET /\r\n\r\n', 400],
  ['CONNECT -> 501', 'CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n', 501],
  ['unknown Expect -> 417', `POST / HTTP/1.1\r\n${H}Expect: 200-ok\r\nContent-Length: 2\r\n\r\nhi`, 417],
  ['bad chunk size',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`, 400],
  ['chunk size overflow',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nhello\r\n0\r\n\r\n`, 400],
  ['chunk data not followed by CRLF',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n`, 400],
  ['chunk size line with a bare LF',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n`, 400],
];

describe('bad input', () => {
  let d;
  before(async () => {
    d = await startPortico({
      config: baseConfig({
        workers: 2,
        // long enough that a timeout (408) can never pass for an answer
        timeouts: { client_header: '60s', client_body: '60s' },
      }),
    });
  });
  after(async () => { await d?.stop(); });

  for (const [name, req, status] of CASES) {
    test(`${name} -> ${status}, Connection: close, closed`, async () => {
      const res = await rawRequest(d.port, req, { timeout: 8000 });
      assert.ok(res.data.length > 0, `no answer within 8 s (timedOut=${res.timedOut})`);
      const r = parseOne(res.data);
      assert.equal(r.status, status, `got ${r.status} ${r.reason}: ${r.body}`);
      assert.match(r.headers.connection ?? '', /^close$/i, 'Connection: close');
      assert.equal(r.headers.server, 'portico');
      assert.equal(Number(r.headers['content-length']), r.body.length);
      assert.ok(res.closed, 'the server closed the connection');
      assert.equal(res.data.length, r.raw.length, 'exactly one response');
    });
  }

  test('a bare CR or LF anywhere in a head not yet ended is answered at once; tabs and high bytes are not bare', async () => {
    // The head is scanned eight bytes at a time for CR and LF: each
    // byte at each place in a word, and the head never ends, so only
    // that scan can answer (the header timeout here is 60 s).
    const answers = [];
    for (const bad of ['\r', '\n']) {
      for (let at = 0; at < 17; at++) {
        const value = 'v'.repeat(at) + bad + 'w'.repeat(24);
        answers.push(rawRequest(d.port, `GET / HTTP/1.1\r\n${H}X-A: ${value}`, { timeout: 8000 })
          .then((res) => [JSON.stringify(bad), at, res]));
      }
    }
    for (const [bad, at, res] of await Promise.all(answers)) {
      assert.ok(res.data.length > 0, `${bad} at ${at}: no answer within 8 s`);
      assert.equal(parseOne(res.data).status, 400, `${bad} at ${at}`);
    }
    for (let at = 0; at < 9; at++) {
      const value = 'v'.repeat(at) + '\t\u00e9\x01'.slice(0, 2) + 'w'.repeat(16);
      const res = await rawRequest(d.port, `GET / HTTP/1.1\r\n${H}X-A: ${value}\r\nConnection: close\r\n\r\n`,
        { timeout: 8000 });
      assert.equal(parseOne(res.data).status, 200, `tab at ${at}`);
    }
  });

  test('a valid request pipelined after a bad one is not answered', async () => {
    const bad = `GET / HTTP/1.1\r\n${H}Host: b.example\r\n\r\n`;
    const good = `GET / HTTP/1.1\r\n${H}\r\n`;
    const res = await rawRequest(d.port, bad + good + good, { timeout: 8000 });
    assert.ok(res.closed, 'closed');
    const { responses, rest } = parseResponses(res.data);
    assert.deepEqual(responses.map((r) => r.status), [400]);
    assert.equal(rest.length, 0);
  });

  test('a valid request sent after the error response is not answered', async () => {
    const c = await RawConn.open(d.port);
    try {
      await c.write(`GET /a#b HTTP/1.1\r\n${H}\r\n`);
      const [r] = await c.read(1);
      assert.equal(r.status, 400);
      // The server has shut its side; a late request must go nowhere.
      await c.write(`GET / HTTP/1.1\r\n${H}\r\n`).catch(() => {});
      assert.ok(await c.waitClosed(), 'closed');
      assert.equal(c.pending.length, 0, 'nothing after the 400');
    } finally {
      c.destroy();
    }
  });

  test('a bad request after good keep-alive ones: good answered, then 400 and close', async () => {
    const c = await RawConn.open(d.port);
    try {
      await c.write(`GET / HTTP/1.1\r\n${H}\r\n`);
      const [ok] = await c.read(1);
      assert.equal(ok.status, 200);
      await c.write(`GET / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\n`);
      const [bad] = await c.read(1);
      assert.equal(bad.status, 400);
      assert.ok(await c.waitClosed(), 'closed');
    } finally {
      c.destroy();
    }
  });

  test('the daemon survived all of it', async () => {
    assert.equal(d.exit, null, 'master still running');
    assert.equal(d.linesMatching(/killed by signal|exited with status/).length, 0,
      d.linesMatching(/killed by signal|exited with status/).join('\n'));
    const res = await rawRequest(d.port, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    assert.equal(parseOne(res.data).status, 200);
  });
});

#!/bin/sh
# demo.sh PORTICOD SRCDIR -- the README's first command (make demo): the
# demo Node.js app on 127.0.0.1:3000 and porticod on 127.0.0.1:8080.
set -eu
porticod=$1
src=$2
node "$src/examples/demo-app.mjs" &
app=$!
trap 'kill $app 2>/dev/null || true' EXIT INT TERM
cat <<TXT

  portico demo: porticod on http://127.0.0.1:8080, demo app on :3000
  Try, from another terminal:
    curl -i http://127.0.0.1:8080/api/hello      (proxied to the Node.js app)
    curl -N http://127.0.0.1:8080/events         (Server-Sent Events, streamed)
    curl -i http://127.0.0.1:8080/cached/x       (twice: the second is a cache hit)
    curl http://127.0.0.1:9901/metrics           (Prometheus metrics)
    curl -i http://127.0.0.1:8080/healthz        (answered by portico itself)
    curl -i http://127.0.0.1:8080/old            (a 301 redirect)
    kill -HUP \$(pgrep -o porticod)               (reload, nothing dropped)
  Edit examples/demo.yaml and reload to change the rules.
  Ctrl-C stops both.

TXT
# Wait for the app so the first requests don't meet a 502.
for _ in $(seq 50); do
    curl -s -o /dev/null http://127.0.0.1:3000/ && break
    sleep 0.1
done
"$porticod" -c "$src/examples/demo.yaml" || true

#!/bin/sh
# CTest cli.serve: `arcflow serve` from the command line. Bad files and flags fail at once with an
# error line naming them (before any port is bound); a real server on a free port (--port 0) answers /healthz and
# a streamed request (server-sent events ending with the result) and stops cleanly (exit 0, "stopped") on SIGINT. Usage: serve.sh ARCFLOW_BINARY (from the repository
# root: it reads models/).
set -u
bin=$1
d=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$d"' EXIT
fail=0
expect() {
  needle=$1
  shift
  out=$(timeout 60 "$bin" serve "$@" 2>&1)
  status=$?
  line=$(printf '%s\n' "$out" | grep -v '^loading ' | grep -F -- "$needle" | head -n 1)
  if [ $status -eq 0 ] || [ $status -eq 124 ] || [ -z "$line" ]; then
    echo "FAIL (status $status) arcflow serve $*"
    printf '%s\n' "$out" | tail -n 3
    fail=1
  else
    echo "ok: arcflow serve $* -> $line"
  fi
}
head -c 5000 models/teacher.safetensors > "$d/truncated.safetensors"
expect "missing-teacher.safetensors" --teacher "$d/missing-teacher.safetensors"
expect "truncated.safetensors" --teacher "$d/truncated.safetensors"
expect "missing-adapter.safetensors" --adapter "x=$d/missing-adapter.safetensors"
expect "NAME=PATH" --adapter models/arcflow-2.safetensors
expect "models/teacher.safetensors" --adapter "x=models/teacher.safetensors"
expect "--max-n" --max-n 0
expect "--port" --port 70000
expect "--queue" --queue 0
expect "--max-connections" --max-connections 0
expect "--idle-timeout" --idle-timeout 0

# A real one: start, ask, stop with Ctrl-C.
"$bin" serve --port 0 --toy-dir "$d" > "$d/log" 2>&1 &
pid=$!
port=""
i=0
while [ $i -lt 300 ] && [ -z "$port" ]; do
  port=$(sed -n 's|.*serving on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$d/log")
  [ -z "$port" ] && sleep 0.1
  i=$((i + 1))
done
if [ -z "$port" ]; then
  echo "FAIL: no 'serving on' line within 30 s"; cat "$d/log"; exit 1
fi
health=$(curl -s "http://127.0.0.1:$port/healthz" 2>&1 || true)
case "$health" in
  *'"status":"ok"'*) echo "ok: /healthz on port $port -> $health" ;;
  *) echo "FAIL: /healthz on port $port -> $health"; fail=1 ;;
esac
events=$(curl -s -N -m 60 -X POST "http://127.0.0.1:$port/v1/generate" \
  -d '{"n": 1, "seed": 1, "teacher_steps": 2, "stream": true}' 2>&1 | grep '^event:' | tr '\n' ' ')
case "$events" in
  "event: queued event: started event: progress event: progress event: progress event: progress event: result ")
    echo "ok: streamed request -> $events" ;;
  *) echo "FAIL: streamed request -> $events"; fail=1 ;;
esac
kill -INT "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
  echo "FAIL: still running 20 s after SIGINT"; fail=1
else
  wait "$pid"
  status=$?
  pid=""
  if [ $status -ne 0 ] || ! grep -q "^stopped" "$d/log"; then
    echo "FAIL: exit status $status after SIGINT"; cat "$d/log"; fail=1
  else
    echo "ok: SIGINT -> exit 0, $(tail -n 1 "$d/log")"
  fi
fi
exit $fail

#!/bin/bash
# bench/report-rss.sh BIN PORT RUNS -- COLLECTOR ARGS…
#
# Starts the collector (`BIN --listen 127.0.0.1:PORT --quiet ARGS…`, e.g. `--db FILE` or
# `--store clickhouse://…`) on data `cargo xtask bench` generated, asks for the full `/v1/report`
# RUNS times (a new `window` each time, so the report cache never answers), and prints for each:
# HTTP status and wall time, the collector's CPU time for it (utime + stime from /proc), and its
# peak RSS while answering it (VmHWM, reset before each request through /proc/PID/clear_refs).
# What `cargo xtask bench` does not show: CPU apart from waiting for a core on a shared machine,
# and memory while reports run.
#
# With ROUTES=1, each run also asks the same report again at once (the report cache's answer;
# it keeps an answer 60 s, until new events arrive), every other read route `cargo xtask
# bench` asks (section 4's list), the CSV exports and the health panel's reads, one line each.
set -u
BIN=$1; PORT=$2; RUNS=$3; shift 4
"$BIN" --listen "127.0.0.1:$PORT" --quiet "$@" > /dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null' EXIT
for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 0.5; done
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
STEPS="milestone:signed_up,milestone:project_created,milestone:teammate_invited,milestone:file_uploaded,milestone:report_shared"
VALUE="milestone:report_shared"
DUE="signed_up:1h,project_created:24h,report_shared:7d"
ask() {
  local name=$1 path=$2 before after took
  echo 5 > "/proc/$PID/clear_refs"
  before=$(cpu)
  took=$(curl -s -o /dev/null -w "%{http_code} %{time_total}" -H "Authorization: Bearer rt_demo" "http://127.0.0.1:$PORT$path")
  after=$(cpu)
  echo "$name: HTTP $took s, collector CPU $(( (after - before) * 1000 / $(getconf CLK_TCK) )) ms, $(grep VmHWM "/proc/$PID/status" | tr -s ' \t' ' ')"
}
for i in $(seq 1 "$RUNS"); do
  report="/v1/report?steps=$STEPS&value=$VALUE&due=$DUE&window=${i}00h"
  ask "run $i" "$report"
  if [ "${ROUTES:-0}" = 1 ]; then
    ask "full report again (cache)" "$report"
    ask funnel "/v1/funnel?steps=$STEPS&window=7d"
    ask ttv "/v1/ttv?steps=$STEPS&value=$VALUE"
    ask cohorts "/v1/cohorts?steps=$STEPS&value=$VALUE&by=week"
    ask tips "/v1/tips"
    ask metrics "/v1/metrics"
    ask stalled "/v1/stalled?due=$DUE"
    ask "stalled csv" "/v1/stalled?due=$DUE&format=csv"
    ask "health counts" "/v1/health?kind=user&limit=1"
    ask "health at risk" "/v1/health?kind=user&band=red&limit=200"
    ask "health csv" "/v1/health?kind=user&format=csv"
    ask lifecycle "/v1/lifecycle?kind=user"
  fi
done

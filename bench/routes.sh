#!/bin/bash
# bench/routes.sh BIN PORT RUNS -- COLLECTOR ARGS…
#
# Like report-rss.sh, for every read route `cargo xtask bench` asks (section 4's list): starts
# the collector (`BIN --listen 127.0.0.1:PORT --quiet ARGS…`), asks each route RUNS times and
# prints for each ask: HTTP status, wall time, the collector's CPU time for it, and its peak RSS
# so far (VmHWM). The full report is asked with a new `window` each time (its cache would answer
# a repeat), then at once again unchanged: that line is the report cache's answer (it keeps an
# answer 60 s, until new events arrive).
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
  before=$(cpu)
  took=$(curl -s -o /dev/null -w "%{http_code} %{time_total}" -H "Authorization: Bearer rt_demo" "http://127.0.0.1:$PORT$path")
  after=$(cpu)
  echo "$name: HTTP $took s, collector CPU $(( (after - before) * 1000 / $(getconf CLK_TCK) )) ms, $(grep VmHWM "/proc/$PID/status" | tr -s ' \t' ' ')"
}
for i in $(seq 1 "$RUNS"); do
  ask "full report" "/v1/report?steps=$STEPS&value=$VALUE&due=$DUE&window=${i}00h"
  ask "full report again (cache)" "/v1/report?steps=$STEPS&value=$VALUE&due=$DUE&window=${i}00h"
  ask funnel "/v1/funnel?steps=$STEPS&window=7d"
  ask ttv "/v1/ttv?steps=$STEPS&value=$VALUE"
  ask cohorts "/v1/cohorts?steps=$STEPS&value=$VALUE&by=week"
  ask tips "/v1/tips"
  ask metrics "/v1/metrics"
  ask stalled "/v1/stalled?due=$DUE"
done

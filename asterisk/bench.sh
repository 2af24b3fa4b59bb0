#!/usr/bin/env bash
# Load benchmark, side by side, on the sandboxed Asterisk 22 (run as root):
#
#   asterisk/bench.sh load [RATES] [SECONDS]   e.g. asterisk/bench.sh load "10 25 50" 20
#       For each call rate, three ways in turn: no webhooks (module not loaded), res_webhook
#       with three endpoints (the end event, like the CURL() run; BENCH_EVENTS="start, answer,
#       end" for all three), and the Asterisk-native alternative (a
#       hangup handler calling CURL() for each of three endpoints). SIPp places answered calls
#       (1 s talk). Reports calls placed / failed, sustained calls/s, Asterisk CPU ms per call,
#       ends lost, and the delay from hangup to the end webhook's arrival (p50 / p99). For the
#       webhook and idle modes, `webhook show status` and `webhook show errors` are kept in
#       target/bench/status-<mode>-<rate>.txt.
#   asterisk/bench.sh outage [SECONDS_DOWN] [RATE]   e.g. asterisk/bench.sh outage 600 5
#       res_webhook under steady load while its endpoint is down: Asterisk's memory (RSS) over
#       time, nothing lost, and the time to drain once the endpoint is back.
#   asterisk/bench.sh smoke                    a few seconds of each mode
# BENCH_MODES="webhook" runs only the modes listed (default: none webhook curl; also: idle =
# the module loaded with no section, i.e. the cost of listening to Stasis alone).
# BENCH_THREADS=1 also writes each mode's CPU per Asterisk thread to target/bench/threads-*.txt.
# BENCH_PERF=1 also records each mode with `perf record -g` into target/bench/perf-*.data (read it
# with `perf report -i target/bench/perf-webhook.data --no-children --sort dso,sym`).
# BENCH_PERF=stat instead counts context switches and CPU time into target/bench/perfstat-*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
asterisk/sandbox.sh deps >/dev/null
asterisk/sandbox.sh ensure
ASTERISK_INCLUDE_DIR="$(asterisk/sandbox.sh include-dir)"
export ASTERISK_INCLUDE_DIR
cargo build --release --lib --example load_receiver >/dev/null 2>&1 || cargo build --release --lib --example load_receiver
asterisk/sandbox.sh install-module target/release/libres_webhook.so

B="$REPO/target/bench"
SIP=25160; UAS=25161; HTTP=25188; RECV=25199
RESULTS="$B/results.txt"
mkdir -p "$B"

pids=()
cleanup() {
    asterisk/sandbox.sh stop "$B/pbx" >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

setup() { # mode: none | idle | webhook | curl
    local mode=$1
    asterisk/sandbox.sh stop "$B/pbx" >/dev/null 2>&1 || true
    rm -rf "$B/pbx" && mkdir -p "$B/pbx/etc"
    for f in tests/asterisk-etc/*.conf; do
        sed -e "s/@SIP_PORT@/$SIP/; s/@HTTP_PORT@/$HTTP/; s/@UAS_ANSWER_PORT@/$UAS/; s/@UAS_BUSY_PORT@/25162/; s/@UAS_RING_PORT@/25163/; s/@RTP_START@/30000/; s/@RTP_END@/39998/" \
            "$f" >"$B/pbx/etc/$(basename "$f")"
    done
    : >"$B/pbx/etc/webhook.conf"
    case $mode in
        idle) ;; # module loaded, no section: the cost of listening alone
        none) sed -i 's/^load => res_webhook.so/noload => res_webhook.so/' "$B/pbx/etc/modules.conf" ;;
        curl)
            sed -i 's/^load => res_webhook.so/noload => res_webhook.so/' "$B/pbx/etc/modules.conf"
            printf '[globals]\nBENCH_CURL=http://127.0.0.1:%s\n' "$RECV" >"$B/pbx/etc/bench-globals.conf" ;;
        webhook)
            for i in 1 2 3; do
                cat >>"$B/pbx/etc/webhook.conf" <<CONF
[ep$i]
type = webhook
url = http://127.0.0.1:$RECV/w$i
method = GET
events = ${BENCH_EVENTS:-end}
param = id => \${call_id}
param = event => \${event}
param = status => \${status}
param = t => \${time_end}
date_format = unix_ms
retry = 1s, 2s, 5s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s, 10s
CONF
            done ;;
    esac
    asterisk/sandbox.sh start "$B/pbx"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$B/pbx/asterisk.pid")/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$(cat "$B/pbx/asterisk.pid")/status"; }

start_uas() {
    sipp -sf tests/sipp/uas_answer.xml -i 127.0.0.1 -p "$UAS" -d 200 -aa -nostdin -nd -l 5000 >/dev/null 2>&1 &
    pids+=($!)
}

place_calls() { # rate count -> prints "successful failed total-seconds"
    local rate=$1 count=$2
    rm -f "$B"/uac_*screen.log
    timeout $((count / rate + 60)) sipp -sf tests/sipp/uac.xml -key caller 79160000000 -s 74951234590 "127.0.0.1:$SIP" \
        -i 127.0.0.1 -p 25170 -r "$rate" -m "$count" -l 5000 -d 1000 -aa -nostdin -nd \
        -trace_screen -screen_file "$B/uac_screen.log" >/dev/null 2>&1 || true
    local ok failed total
    ok=$(grep -m1 "Successful call" "$B/uac_screen.log" | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    failed=$(grep -m1 "Failed call" "$B/uac_screen.log" | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    # SIPp's Total-time runs from the first INVITE to the last BYE's answer: one talk time more
    # than the span over which calls were started.
    total=$(awk '/Total-time/ { getline; print $4; exit }' "$B/uac_screen.log")
    echo "${ok:-0} ${failed:-0} ${total:-0}"
}

run_mode() { # mode rate seconds
    local mode=$1 rate=$2 secs=$3 count=$(( $2 * $3 ))
    setup "$mode"
    target/release/examples/load_receiver "127.0.0.1:$RECV" --seconds $((secs + 25)) >"$B/recv.json" 2>/dev/null &
    local rpid=$!
    pids+=($rpid)
    start_uas
    sleep 1
    local c0 c1 res ok failed
    c0=$(cpu_ticks)
    local perf_pid=""
    if [ "${BENCH_PERF:-}" = stat ]; then # count Asterisk's context switches while the calls run
        perf stat -e context-switches,cpu-clock -p "$(cat "$B/pbx/asterisk.pid")" -o "$B/perfstat-$mode.txt" &
        perf_pid=$!
    elif [ -n "${BENCH_PERF:-}" ]; then # sample Asterisk's threads while the calls run
        perf record -q -F 4999 -g -p "$(cat "$B/pbx/asterisk.pid")" -o "$B/perf-$mode.data" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    res=$(place_calls "$rate" "$count")
    c1=$(cpu_ticks)
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
    local total; read -r ok failed total <<<"$res"
    local cps; cps=$(awk -v n="$ok" -v t="$total" 'BEGIN { if (t > 1) printf "%.1f", n / (t - 1); else print "-" }')
    local hook=""
    if [ "$mode" = webhook ] || [ "$mode" = idle ]; then
        sleep 2
        { asterisk/sandbox.sh cli "$B/pbx" "webhook show status"; asterisk/sandbox.sh cli "$B/pbx" "webhook show errors"; } >"$B/status-$mode-$rate.txt"
        hook=$(grep "Hook cost" "$B/status-$mode-$rate.txt" | sed 's/.*): //')
    fi
    if [ -n "${BENCH_THREADS:-}" ]; then # CPU ticks per Asterisk thread, to see where time goes
        local t p; p=$(cat "$B/pbx/asterisk.pid")
        for t in /proc/"$p"/task/*; do echo "$(awk '{print $14 + $15}' "$t/stat") $(cat "$t/comm")"; done \
            | sort -rn | head -n 15 >"$B/threads-$mode.txt"
    fi
    asterisk/sandbox.sh stop "$B/pbx" >/dev/null 2>&1 || true
    wait "$rpid" 2>/dev/null || true
    local tick; tick=$(getconf CLK_TCK)
    local cpu_ms; cpu_ms=$(awk -v a="$c0" -v b="$c1" -v t="$tick" -v n="$ok" 'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1000 / t / n; else print "-" }')
    local stats; stats=$(cat "$B/recv.json")
    local calls p50 p99 lost
    calls=$(echo "$stats" | sed 's/.*"distinct_calls":\([0-9]*\).*/\1/')
    p50=$(echo "$stats" | sed 's/.*"end_delay_ms_p50":\([-0-9.]*\).*/\1/')
    p99=$(echo "$stats" | sed 's/.*"end_delay_ms_p99":\([-0-9.]*\).*/\1/')
    if [ "$mode" = none ] || [ "$mode" = idle ]; then lost="-"; p50="-"; p99="-"; else lost=$(( ok - calls )); fi
    printf "| %-8s | %4s cps | %6s | %6s | %6s | %8s | %6s | %8s | %8s | %s\n" "$mode" "$rate" "$cps" "$ok" "$failed" "$cpu_ms" "$lost" "$p50" "$p99" "$hook" | tee -a "$RESULTS"
}

header() {
    echo "| mode     | rate     | sustained cps | calls  | failed | CPU ms/call | ends lost | end p50 ms | end p99 ms | hook cost (res_webhook)" | tee -a "$RESULTS"
    echo "|---|---|---|---|---|---|---|---|---|---|" | tee -a "$RESULTS"
}

cmd_load() {
    local rates=${1:-"10 25 50"} secs=${2:-20}
    echo "# load $(date -u +%FT%TZ) on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" | tee -a "$RESULTS"
    header
    for r in $rates; do
        for m in ${BENCH_MODES:-none webhook curl}; do run_mode "$m" "$r" "$secs"; done
    done
}

cmd_outage() {
    local down=${1:-120} rate=${2:-5}
    setup webhook
    start_uas
    echo "# outage: endpoint down ${down}s under ${rate} cps, $(date -u +%FT%TZ)" | tee -a "$RESULTS"
    local count=$(( down * rate ))
    ( place_calls "$rate" "$count" >"$B/outage_calls.txt" ) &
    local lp=$!
    local t=0
    while kill -0 "$lp" 2>/dev/null; do
        echo "t=${t}s asterisk_rss_kb=$(rss_kb) $(asterisk/sandbox.sh cli "$B/pbx" 'webhook show status' | awk '/^ep1/ {print "ep1_spooled=" $7}')" | tee -a "$RESULTS"
        sleep 10; t=$((t + 10))
    done
    local ok _; read -r ok _ <"$B/outage_calls.txt"
    echo "calls placed: $ok; endpoint back up at t=${t}s" | tee -a "$RESULTS"
    target/release/examples/load_receiver "127.0.0.1:$RECV" --seconds 900 >"$B/recv.json" 2>"$B/recv.progress" &
    pids+=($!)
    local start; start=$(date +%s.%N)
    while :; do
        local seen; seen=$(tail -n 1 "$B/recv.progress" 2>/dev/null | sed -n 's/.*calls=\([0-9]*\).*/\1/p')
        local reqs; reqs=$(tail -n 1 "$B/recv.progress" 2>/dev/null | sed -n 's/.*requests=\([0-9]*\).*/\1/p')
        # 3 endpoints × (start, answer, end) per call
        if [ -n "$reqs" ] && [ "$reqs" -ge $(( ok * 9 )) ]; then break; fi
        if awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { exit !(n - s > 600) }'; then echo "drain did not finish in 600 s" | tee -a "$RESULTS"; break; fi
        sleep 0.5
    done
    echo "drained $(tail -n 1 "$B/recv.progress") in $(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }') s; asterisk_rss_kb=$(rss_kb)" | tee -a "$RESULTS"
}

case "${1:-load}" in
    load) shift || true; cmd_load "$@" ;;
    outage) shift; cmd_outage "$@" ;;
    smoke) header; for m in none webhook curl; do run_mode "$m" 5 4; done ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
esac

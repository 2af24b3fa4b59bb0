#!/usr/bin/env bash
# Load benchmark, side by side, on the sandboxed Asterisk 22 (run as root):
#
#   asterisk/bench.sh load [RATES] [SECONDS]   e.g. asterisk/bench.sh load "20 100 300" 30
#       For each call rate and each of BENCH_ROUNDS rounds (default 3), every mode in turn
#       (rounds interleaved, so drift on a shared machine hits every mode alike). Modes
#       (BENCH_MODES, default "none idle webhook curl ami"):
#         none     res_webhook not loaded, nothing listening
#         idle     res_webhook loaded with no section (the cost of being loaded)
#         webhook  res_webhook, the realistic configuration: a CRM endpoint (POST JSON, signed,
#                  ~30 fields, start/answer/end) plus an end-only analytics endpoint (GET)
#         webhook3 res_webhook, the end event to three GET endpoints (like the curl mode)
#         listen   the webhook mode's configuration wanting only `transfer`, which these calls
#                  never have: the hook and the call model at work, nothing rendered or sent
#         nats     the webhook mode with the CRM section as type = nats: published to a local
#                  nats-server's JetStream (stream PBX) instead of POSTed; the analytics GET
#                  stays HTTP (it gives the end latency)
#         curl     a hangup handler calling CURL() for each of three endpoints
#         ami      AMI enabled and asterisk/ami_connector.py (panoramisk) posting one end per
#                  call from Newchannel / DialEnd / Hangup events
#         before   the webhook mode with another build of the module, BENCH_BEFORE_SO=path/to.so
#                  (e.g. the previous commit's), to compare builds within one run
#       SIPp places answered calls (1 s talk). Each round's row goes to target/bench/rounds.txt;
#       the table of medians over the rounds to target/bench/results.txt: sustained calls/s,
#       Asterisk CPU ms per call (user + system), context switches per call (perf stat),
#       ends lost, hangup-to-end-arrival p50 / p99, and the hook's own cost. For the webhook
#       and idle modes, `webhook show status` and `webhook show errors` are kept in
#       target/bench/status-<mode>-<rate>-<round>.txt.
#   asterisk/bench.sh outage [SECONDS_DOWN] [RATE]   e.g. asterisk/bench.sh outage 600 5
#       res_webhook under steady load while its endpoint is down: Asterisk's memory (RSS) over
#       time, nothing lost, and the time to drain once the endpoint is back.
#   asterisk/bench.sh smoke                    a few seconds of each mode
#   asterisk/bench.sh summary [LINE]           the table of medians again, from rounds.txt line N
# BENCH_PAIR=1 runs *none* and *webhook* side by side instead of in turn: two Asterisks, each
# with its own SIPp pair at the full rate, measured over the same seconds, so the machine's
# drift (which moves a mode's CPU per call by ±15 % from one round to the next here) weighs on
# both alike. Up to ~100 cps on 2 cores (two PBXs at once). BENCH_PAIR_A=before puts the
# before mode (BENCH_BEFORE_SO) in place of *none*: two builds of the module side by side;
# BENCH_PAIR_B=listen puts the listen mode in place of *webhook*.
# With BENCH_PERF both PBXs are sampled at BENCH_PERF_HZ (default 999): at 100 cps that
# overloads two cores, so profile pairs at a lower rate.
# BENCH_PIN=1 puts Asterisk (all its threads) on CPU 1 and the load generators on CPU 0. Less
# spread at 100 cps, but the module's threads then share one core with Asterisk's (more context
# switches), and one core cannot carry 300 cps.
# BENCH_THREADS=1 also writes each mode's CPU and context switches per call and Asterisk thread
# (while the calls ran) to target/bench/threads-<mode>-<rate>.txt.
# With BENCH_PAIR, BENCH_THREADS=1 splits each PBX's CPU per call into our threads, Asterisk's
# long-lived threads and the per-call threads (target/bench/threads-pair.txt).
# BENCH_PERF=1 records each mode with `perf record -g` into target/bench/perf-<mode>-<rate>.data
# (read it with `perf report -i target/bench/perf-webhook-100.data --no-children --sort dso,sym`)
# instead of counting context switches (BENCH_PERF=flat: without call graphs, far less overhead).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
asterisk/sandbox.sh deps >/dev/null
asterisk/sandbox.sh ensure
ASTERISK_INCLUDE_DIR="$(asterisk/sandbox.sh include-dir)"
export ASTERISK_INCLUDE_DIR
cargo build --release --lib --example load_receiver --example nats_stream >/dev/null 2>&1 || cargo build --release --lib --example load_receiver --example nats_stream
case " ${BENCH_MODES:-none idle webhook curl ami} " in
    *" ami "*) python3 -c 'import panoramisk' 2>/dev/null || python3 -m pip install --quiet panoramisk ;;
esac
asterisk/sandbox.sh install-module target/release/libres_webhook.so

B="$REPO/target/bench"
SIP=25160; UAS=25161; HTTP=25188; RECV=25199; AMI=25038; NATS=25222
RESULTS="$B/results.txt"
ROUNDS="$B/rounds.txt"
mkdir -p "$B"
GEN=""; [ -n "${BENCH_PIN:-}" ] && GEN="taskset -c 0"
# The instance being set up or measured, and its port offset (the pair mode runs two at once).
PBX="$B/pbx"; OFF=0; RTP_START=30000; RTP_END=39998

pids=()
cleanup() {
    asterisk/sandbox.sh stop "$B/pbx" >/dev/null 2>&1 || true
    asterisk/sandbox.sh stop "$B/pbx2" >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

setup() { # mode: none | idle | webhook | webhook3 | curl | ami | before
    local mode=$1
    if [ "$mode" = before ]; then
        asterisk/sandbox.sh install-module "${BENCH_BEFORE_SO:?the before mode needs BENCH_BEFORE_SO}"
        mode=webhook
    elif [ -n "${BENCH_BEFORE_SO:-}" ]; then
        asterisk/sandbox.sh install-module target/release/libres_webhook.so
    fi
    asterisk/sandbox.sh stop "$PBX" >/dev/null 2>&1 || true
    rm -rf "$PBX" && mkdir -p "$PBX/etc"
    for f in tests/asterisk-etc/*.conf; do
        sed -e "s/@SIP_PORT@/$((SIP + OFF))/; s/@HTTP_PORT@/$((HTTP + OFF))/; s/@UAS_ANSWER_PORT@/$((UAS + OFF))/; s/@UAS_BUSY_PORT@/$((25162 + OFF))/; s/@UAS_RING_PORT@/$((25163 + OFF))/; s/@UAS_REFER_PORT@/$((25164 + OFF))/; s/@AMI_PORT@/$((AMI + OFF))/; s/@RTP_START@/$RTP_START/; s/@RTP_END@/$RTP_END/" \
            "$f" >"$PBX/etc/$(basename "$f")"
    done
    # The benchmark measures calls, not the live tests' oracles: no CEL or CDR files, and AMI
    # only in the ami mode (which writes its own manager.conf).
    rm -f "$PBX/etc/manager.conf"
    sed -i 's/^enable *= *yes/enable = no/' "$PBX/etc/cel.conf" "$PBX/etc/cdr.conf"
    : >"$PBX/etc/webhook.conf"
    case $mode in
        idle) ;; # module loaded, no section (so nothing subscribed): the cost of being loaded
        none) sed -i 's/^load => res_webhook.so/noload => res_webhook.so/' "$PBX/etc/modules.conf" ;;
        curl)
            sed -i 's/^load => res_webhook.so/noload => res_webhook.so/' "$PBX/etc/modules.conf"
            printf '[globals]\nBENCH_CURL=http://127.0.0.1:%s\n' "$RECV" >"$PBX/etc/bench-globals.conf" ;;
        ami)
            sed -i 's/^load => res_webhook.so/noload => res_webhook.so/' "$PBX/etc/modules.conf"
            cat >"$PBX/etc/manager.conf" <<CONF
[general]
enabled = yes
bindaddr = 127.0.0.1
port = $((AMI + OFF))
timestampevents = yes

[bench]
secret = bench
read = call
write = system
; only the events the connector reads (whitelist filters are ORed)
eventfilter = Event: Newchannel
eventfilter = Event: DialEnd
eventfilter = Event: Hangup
CONF
            ;;
        webhook|nats|listen)
            sed "s|@RECV@|$RECV|g" asterisk/bench-webhook.conf >"$PBX/etc/webhook.conf"
            # listen: the same sections, subscribed and correlating, but wanting only the
            # transfer event, which these calls never have: nothing rendered or sent.
            [ "$mode" = listen ] && sed -i 's/^events = .*/events = transfer/' "$PBX/etc/webhook.conf"
            if [ "$mode" = nats ]; then # the CRM section publishes to JetStream instead
                sed -i "s|^type = webhook\$|&|; /^\[crm\]/,/^\[analytics\]/ { s|^type = webhook|type = nats|; s|^url = http://127.0.0.1:$RECV/crm|url = nats://127.0.0.1:$NATS\nsubject = pbx.\${direction}.\${event}|; /^method = /d; /^secret = /d }" "$PBX/etc/webhook.conf"
                pkill -f "nats-server.*-p $NATS" 2>/dev/null || true
                rm -rf "$B/nats" && mkdir -p "$B/nats"
                nats-server -js -a 127.0.0.1 -p "$NATS" -sd "$B/nats" >/dev/null 2>&1 &
                pids+=($!)
                for _ in $(seq 1 50); do target/release/examples/nats_stream create "nats://127.0.0.1:$NATS" >/dev/null 2>&1 && break; sleep 0.2; done
            fi
            ;;
        webhook3)
            for i in 1 2 3; do
                cat >>"$PBX/etc/webhook.conf" <<CONF
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
    asterisk/sandbox.sh start "$PBX"
    # BENCH_PIN=1: Asterisk (every thread, and those it starts later) on CPU 1, SIPp and the
    # receivers on CPU 0, so the load generators do not share a core's caches with the PBX.
    [ -n "${BENCH_PIN:-}" ] && taskset -a -p -c 1 "$(cat "$PBX/asterisk.pid")" >/dev/null
    return 0
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$PBX/asterisk.pid")/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$(cat "$PBX/asterisk.pid")/status"; }

start_uas() {
    $GEN sipp -sf tests/sipp/uas_answer.xml -i 127.0.0.1 -p "$((UAS + OFF))" -d 200 -aa -nostdin -nd -l 5000 >/dev/null 2>&1 &
    pids+=($!)
}

# Each thread of $1: tid, CPU ns (schedstat), voluntary and involuntary context switches, name.
thread_times() {
    local t
    for t in /proc/"$1"/task/*; do
        echo "${t##*/} $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null) $(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v, n}' "$t/status" 2>/dev/null) $(cat "$t/comm" 2>/dev/null)"
    done
}

# What each thread present in both snapshots of thread_times ($1 before, $2 after) used in
# between: tid, CPU ns, voluntary and involuntary context switches, name.
thread_deltas() {
    awk 'NR == FNR { ns[$1] = $2; v[$1] = $3; iv[$1] = $4; next }
         ($1 in ns) { printf "%s %.0f %.0f %.0f %s\n", $1, $2 - ns[$1], $3 - v[$1], $4 - iv[$1], $5 }' "$1" "$2"
}

# Where one PBX's CPU per call went while the calls ran: our threads (webhook-*), Asterisk's
# threads that lived through the run, and the rest of the process's total (threads that started
# or ended meanwhile: the per-call PBX threads, on which the hook also runs).
thread_split() { # mode res t0 t1 before after
    local ok; ok=$(echo "$2" | cut -d' ' -f1)
    thread_deltas "$5" "$6" | awk -v mode="$1" -v ok="$ok" -v t0="$3" -v t1="$4" -v tck="$(getconf CLK_TCK)" '
        { d = $2 / 1000; if ($5 ~ /^webhook/) { ours += d; per[$5] += d } else lived += d }
        END { if (ok < 1) exit
              total = (t1 - t0) * 1e6 / tck
              printf "%-8s total %6.1f µs/call = ours %5.1f + Asterisk long-lived threads %6.1f + short-lived threads %6.1f  (", mode, total / ok, ours / ok, lived / ok, (total - ours - lived) / ok
              for (t in per) printf " %s %.1f", t, per[t] / ok
              print " )" }'
}

place_calls() { # rate count -> prints "successful failed total-seconds"
    local rate=$1 count=$2
    local screen="$B/uac_screen$OFF.log"
    rm -f "$screen"
    $GEN timeout $((count / rate + 60)) sipp -sf tests/sipp/uac.xml -key caller 79160000000 -s 74951234590 "127.0.0.1:$((SIP + OFF))" \
        -i 127.0.0.1 -p $((25170 + OFF)) -r "$rate" -m "$count" -l 5000 -d 1000 -aa -nostdin -nd \
        -trace_screen -screen_file "$screen" >/dev/null 2>&1 || true
    local ok failed total
    # SIPp writes its screen only when it ends: a run killed at its time limit leaves none, and
    # its round is then reported as unfinished (0 calls), not the whole bench stopped by
    # pipefail.
    ok=$(grep -m1 "Successful call" "$screen" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$3); print $3}') || true
    if [ -z "$ok" ]; then
        echo "bench.sh: SIPp on port $((SIP + OFF)) left no screen (killed at its $((count / rate + 60)) s limit, or it did not start): the round counts as unfinished" >&2
        echo "0 0 0"
        return
    fi
    failed=$(grep -m1 "Failed call" "$screen" | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    # SIPp's Total-time runs from the first INVITE to the last BYE's answer: one talk time more
    # than the span over which calls were started.
    total=$(awk '/Total-time/ { getline; print $4; exit }' "$screen")
    echo "${ok:-0} ${failed:-0} ${total:-0}"
}

proc_cpu_ms() { # pid -> user + system ms so far (0 when gone)
    awk -v t="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) * 1000 / t}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# One round's row of one mode, printed and added to rounds.txt. res: what place_calls printed;
# t0/t1: the PBX's CPU ticks before and after the calls; cs_file: perf stat's output ("" when
# not counted); extra_ms: a connector's own CPU; the end latencies come from the receiver's
# recv.json (none and idle send nothing).
round_row() { # mode rate round res t0 t1 cs_file extra_ms hook
    local mode=$1 rate=$2 round=$3 res=$4 t0=$5 t1=$6 cs_file=$7 extra_ms=$8 hook=$9
    local ok failed total; read -r ok failed total <<<"$res"
    local cps; cps=$(awk -v n="$ok" -v t="$total" 'BEGIN { if (t > 1) printf "%.1f", n / (t - 1); else print "-" }')
    local cs="-"
    [ -n "$cs_file" ] && cs=$(awk -F, -v n="$ok" '$3 == "context-switches" && n > 0 { printf "%.1f", $1 / n }' "$cs_file")
    local cpu_ms; cpu_ms=$(awk -v a="$t0" -v b="$t1" -v t="$(getconf CLK_TCK)" -v n="$ok" 'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1000 / t / n; else print "-" }')
    local extra; extra=$(awk -v e="$extra_ms" -v n="$ok" 'BEGIN { if (e > 0 && n > 0) printf "%.2f", e / n; else print "-" }')
    local lost="-" p50="-" p99="-"
    if [ "$mode" != none ] && [ "$mode" != idle ] && [ "$mode" != listen ]; then
        local stats calls; stats=$(cat "$B/recv.json" 2>/dev/null)
        calls=$(echo "$stats" | sed -n 's/.*"distinct_calls":\([0-9]*\).*/\1/p')
        p50=$(echo "$stats" | sed -n 's/.*"end_delay_ms_p50":\([-0-9.]*\).*/\1/p')
        p99=$(echo "$stats" | sed -n 's/.*"end_delay_ms_p99":\([-0-9.]*\).*/\1/p')
        lost=$(( ok - ${calls:-0} ))
    fi
    printf "| %-8s | %4s cps | %2s | %6s | %6s | %6s | %8s | %7s | %6s | %8s | %8s | %7s | %s\n" \
        "$mode" "$rate" "$round" "$cps" "$ok" "$failed" "$cpu_ms" "$cs" "$lost" "$p50" "$p99" "$extra" "$hook" | tee -a "$ROUNDS"
}

run_mode() { # mode rate seconds round
    local mode=$1 rate=$2 secs=$3 round=${4:-1} count=$(( $2 * $3 ))
    setup "$mode"
    $GEN target/release/examples/load_receiver "127.0.0.1:$RECV" --seconds $((secs + 60)) --idle-exit 3 >"$B/recv.json" 2>/dev/null &
    local rpid=$!
    pids+=($rpid)
    local apid=""
    if [ "$mode" = ami ]; then
        $GEN python3 asterisk/ami_connector.py --ami "127.0.0.1:$AMI" --url "http://127.0.0.1:$RECV/a1" \
            --seconds $((secs + 60)) 2>"$B/ami-connector.log" &
        apid=$!
        pids+=($apid)
    fi
    start_uas
    sleep 1
    local pid; pid=$(cat "$B/pbx/asterisk.pid")
    local c0 c1 res
    c0=$(cpu_ticks)
    [ -n "${BENCH_THREADS:-}" ] && thread_times "$pid" >"$B/threads-before.txt"
    local perf_pid=""
    if [ -n "${BENCH_PERF:-}" ]; then # sample Asterisk's threads while the calls run
        local g=-g; [ "$BENCH_PERF" = flat ] && g=""   # flat: no call graphs, far less overhead
        perf record -q -F 4999 $g -p "$pid" -o "$B/perf-$mode-$rate.data" >/dev/null 2>&1 &
        perf_pid=$!
    else # count Asterisk's context switches (every thread, also ones started later)
        perf stat -e context-switches,page-faults -p "$pid" -x, -o "$B/perfstat.txt" &
        perf_pid=$!
    fi
    res=$(place_calls "$rate" "$count")
    c1=$(cpu_ticks)
    [ -n "${BENCH_THREADS:-}" ] && thread_times "$pid" >"$B/threads-after.txt"
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
    local extra_ms=0
    [ -n "$apid" ] && extra_ms=$(proc_cpu_ms "$apid")
    local hook=""
    if [ "$mode" = webhook ] || [ "$mode" = webhook3 ] || [ "$mode" = idle ] || [ "$mode" = before ] || [ "$mode" = nats ] || [ "$mode" = listen ]; then
        sleep 2
        { asterisk/sandbox.sh cli "$B/pbx" "webhook show status"; asterisk/sandbox.sh cli "$B/pbx" "webhook show errors"
          [ "$mode" = nats ] && echo "JetStream messages in PBX: $(target/release/examples/nats_stream count "nats://127.0.0.1:$NATS" 2>&1) (3 per call expected)"
        } >"$B/status-$mode-$rate-$round.txt"
        hook=$(grep "Hook cost" "$B/status-$mode-$rate-$round.txt" | sed 's/.*): //')
    fi
    if [ -n "${BENCH_THREADS:-}" ]; then # CPU per call of each Asterisk thread while the calls ran
        { echo "per call, while the calls ran: CPU µs, voluntary and involuntary context switches (threads that started or ended meanwhile are missing)"
          thread_deltas "$B/threads-before.txt" "$B/threads-after.txt" |
              awk -v n="$res" 'BEGIN { split(n, r, " "); ok = r[1] }
                  ok > 0 { d = $2 / 1000 / ok
                      if (d >= 0.5) printf "%8.1f µs %6.2f %6.2f  %s\n", d, $3 / ok, $4 / ok, $5 }' |
              sort -rn | head -n 25; } >"$B/threads-$mode-$rate.txt"
    fi
    if [ "$mode" = none ] || [ "$mode" = idle ] || [ "$mode" = listen ]; then kill "$rpid" 2>/dev/null || true; fi
    asterisk/sandbox.sh stop "$B/pbx" >/dev/null 2>&1 || true
    wait "$rpid" 2>/dev/null || true
    if [ -n "$apid" ]; then kill "$apid" 2>/dev/null || true; wait "$apid" 2>/dev/null || true; fi
    local cs_file="$B/perfstat.txt"; [ -n "${BENCH_PERF:-}" ] && cs_file=""
    round_row "$mode" "$rate" "$round" "$res" "$c0" "$c1" "$cs_file" "$extra_ms" "$hook"
}

# The pair mode: *none* and *webhook* at the same time, each Asterisk with its own SIPp pair
# at the full rate (ports and RTP ranges apart), so whatever else the machine does meanwhile
# weighs on both alike; rows are named none and webhook, like the sequential modes'.
run_pair() { # rate seconds round
    local rate=$1 secs=$2 round=$3 count=$(( $1 * $2 ))
    local a=${BENCH_PAIR_A:-none}
    # Another build in place of none sends to a receiver of its own (its call ids may be the
    # same as the other PBX's).
    PBX="$B/pbx" OFF=0 RTP_START=30000 RTP_END=34998 RECV=$((RECV + 100)) setup "$a"
    local b=${BENCH_PAIR_B:-webhook}
    PBX="$B/pbx2" OFF=100 RTP_START=35000 RTP_END=39998 setup "$b"
    $GEN target/release/examples/load_receiver "127.0.0.1:$RECV" --seconds $((secs + 60)) --idle-exit 3 >"$B/recv.json" 2>/dev/null &
    local rpid=$! rpid_a=""
    pids+=($rpid)
    if [ "$a" != none ]; then
        $GEN target/release/examples/load_receiver "127.0.0.1:$((RECV + 100))" --seconds $((secs + 60)) --idle-exit 3 >"$B/recv-a.json" 2>/dev/null &
        rpid_a=$!
        pids+=($rpid_a)
    fi
    OFF=0 start_uas
    OFF=100 start_uas
    sleep 1
    local pa pb; pa=$(cat "$B/pbx/asterisk.pid"); pb=$(cat "$B/pbx2/asterisk.pid")
    local a0 b0 a1 b1
    a0=$(PBX="$B/pbx" cpu_ticks); b0=$(PBX="$B/pbx2" cpu_ticks)
    if [ -n "${BENCH_THREADS:-}" ]; then thread_times "$pa" >"$B/threads-a0.txt"; thread_times "$pb" >"$B/threads-b0.txt"; fi
    local sa sb
    if [ -n "${BENCH_PERF:-}" ]; then # both PBXs sampled over the same seconds
        local g=-g; [ "$BENCH_PERF" = flat ] && g=""
        perf record -q -F "${BENCH_PERF_HZ:-999}" $g -p "$pa" -o "$B/perf-pair-$a-$rate.data" >/dev/null 2>&1 & sa=$!
        perf record -q -F "${BENCH_PERF_HZ:-999}" $g -p "$pb" -o "$B/perf-pair-$b-$rate.data" >/dev/null 2>&1 & sb=$!
    else
        perf stat -e context-switches,page-faults -p "$pa" -x, -o "$B/perfstat-a.txt" & sa=$!
        perf stat -e context-switches,page-faults -p "$pb" -x, -o "$B/perfstat-b.txt" & sb=$!
    fi
    OFF=0 place_calls "$rate" "$count" >"$B/pair-a.txt" & local ca=$!
    OFF=100 place_calls "$rate" "$count" >"$B/pair-b.txt" & local cb=$!
    wait "$ca" "$cb"
    a1=$(PBX="$B/pbx" cpu_ticks); b1=$(PBX="$B/pbx2" cpu_ticks)
    if [ -n "${BENCH_THREADS:-}" ]; then thread_times "$pa" >"$B/threads-a1.txt"; thread_times "$pb" >"$B/threads-b1.txt"; fi
    kill -INT "$sa" "$sb"; wait "$sa" "$sb" 2>/dev/null || true
    if [ -n "${BENCH_THREADS:-}" ]; then
        { thread_split "$a" "$(cat "$B/pair-a.txt")" "$a0" "$a1" "$B/threads-a0.txt" "$B/threads-a1.txt"
          thread_split "$b" "$(cat "$B/pair-b.txt")" "$b0" "$b1" "$B/threads-b0.txt" "$B/threads-b1.txt"
        } | sed "s/^/$rate cps round $round: /" | tee -a "$B/threads-pair.txt"
    fi
    sleep 2
    { asterisk/sandbox.sh cli "$B/pbx2" "webhook show status"; asterisk/sandbox.sh cli "$B/pbx2" "webhook show errors"; } >"$B/status-pair-$rate-$round.txt"
    local hook; hook=$(grep "Hook cost" "$B/status-pair-$rate-$round.txt" | sed 's/.*): //')
    local hook_a=""
    if [ "$a" != none ]; then
        asterisk/sandbox.sh cli "$B/pbx" "webhook show status" >"$B/status-pair-a-$rate-$round.txt" 2>&1 || true
        hook_a=$(grep "Hook cost" "$B/status-pair-a-$rate-$round.txt" | sed 's/.*): //')
    fi
    asterisk/sandbox.sh stop "$B/pbx" >/dev/null 2>&1 || true
    asterisk/sandbox.sh stop "$B/pbx2" >/dev/null 2>&1 || true
    [ "$b" = listen ] && { kill "$rpid" 2>/dev/null || true; }
    wait "$rpid" 2>/dev/null || true
    if [ -n "$rpid_a" ]; then wait "$rpid_a" 2>/dev/null || true; cp "$B/recv.json" "$B/recv-b.json"; cp "$B/recv-a.json" "$B/recv.json"; fi
    local cs_a="$B/perfstat-a.txt" cs_b="$B/perfstat-b.txt"
    [ -n "${BENCH_PERF:-}" ] && cs_a="" cs_b=""
    round_row "$a" "$rate" "$round" "$(cat "$B/pair-a.txt")" "$a0" "$a1" "$cs_a" 0 "$hook_a"
    [ -n "$rpid_a" ] && cp "$B/recv-b.json" "$B/recv.json"
    round_row "$b" "$rate" "$round" "$(cat "$B/pair-b.txt")" "$b0" "$b1" "$cs_b" 0 "$hook"
}

header() {
    echo "| mode     | rate     | round | sustained cps | calls  | failed | CPU ms/call | cs/call | ends lost | end p50 ms | end p99 ms | connector CPU ms/call | hook cost (res_webhook)" | tee -a "$ROUNDS"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|" | tee -a "$ROUNDS"
}

# The table of medians: one row per mode and rate, over the rounds just run (rows of $ROUNDS
# after line $1), with CPU and context switches also relative to the none mode of the same rate.
summarize() {
    local from=$1
    tail -n +"$from" "$ROUNDS" | awk -F'|' '
        function med(key,   n, i, j, t, a) {
            n = split(vals[key], a, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            if (n == 0) return "-"
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function add(key, v) { if (v != "-" && v != "") vals[key] = vals[key] " " v }
        /^\| [a-z]/ && $4 ~ /[0-9]/ {
            for (i = 2; i <= NF; i++) gsub(/^ +| +$/, "", $i)
            m = $2; r = $3 + 0; k = m SUBSEP r
            if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
            # A round whose SIPp run did not finish (killed at its time limit, so no counts)
            # is left out, and counted.
            if ($6 + 0 == 0) { invalid[k]++; next }
            rounds[k]++
            if ($8 + 0 > 0) { percpu[m SUBSEP r SUBSEP ($4 + 0)] = $8 + 0; rnd[r SUBSEP ($4 + 0)] = 1 }
            add(k SUBSEP "cps", $5); calls[k] += $6; failed[k] += $7
            add(k SUBSEP "cpu", $8); add(k SUBSEP "cs", $9)
            if ($10 != "-") { lost[k] += $10; haslost[k] = 1 }
            add(k SUBSEP "p50", $11); add(k SUBSEP "p99", $12); add(k SUBSEP "extra", $13)
            if ($14 ~ /p99/) { h = $14; sub(/ over.*/, "", h); hook[k] = hook[k] (hook[k] == "" ? "" : "; ") h }
        }
        END {
            print "| mode | rate | rounds | sustained cps | calls | failed | CPU ms/call | vs none | vs none, same round | cs/call | vs none | ends lost | end p50 ms | end p99 ms | connector CPU ms/call | hook p50 / p99 per round |"
            print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            for (i = 1; i <= nk; i++) {
                k = order[i]; split(k, mr, SUBSEP); base = "none" SUBSEP mr[2]
                cpu = med(k SUBSEP "cpu"); cs = med(k SUBSEP "cs")
                bcpu = (base in seen) ? med(base SUBSEP "cpu") : "-"; bcs = (base in seen) ? med(base SUBSEP "cs") : "-"
                dcpu = (bcpu != "-" && bcpu > 0 && cpu != "-") ? sprintf("%+.1f %%", (cpu / bcpu - 1) * 100) : "-"
                dcs = (bcs != "-" && cs != "-") ? sprintf("%+.1f", cs - bcs) : "-"
                nr = rounds[k] (invalid[k] ? sprintf(" (+%d unfinished)", invalid[k]) : "")
                # The median of the ratios to none within each round: drift between rounds cancels.
                vals["paired"] = ""
                for (rr in rnd) {
                    split(rr, q, SUBSEP)
                    if (q[1] == mr[2] && ((mr[1] SUBSEP rr) in percpu) && (("none" SUBSEP rr) in percpu))
                        vals["paired"] = vals["paired"] " " (percpu[mr[1] SUBSEP rr] / percpu["none" SUBSEP rr] - 1) * 100
                }
                pr = (mr[1] != "none" && vals["paired"] != "") ? sprintf("%+.1f %%", med("paired")) : "-"
                printf "| %s | %d cps | %s | %s | %d | %d | %.2f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", mr[1], mr[2], nr, med(k SUBSEP "cps"), calls[k], failed[k], cpu, dcpu, pr, cs, dcs, (k in haslost) ? lost[k] : "-", med(k SUBSEP "p50"), med(k SUBSEP "p99"), med(k SUBSEP "extra"), hook[k] == "" ? "-" : hook[k]
            }
        }' | tee -a "$RESULTS"
}

cmd_load() {
    local rates=${1:-"20 100 300"} secs=${2:-20}
    local from=1
    [ -f "$ROUNDS" ] && from=$(( $(wc -l <"$ROUNDS") + 1 ))
    echo "# load $(date -u +%FT%TZ) on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo): rates $rates, ${secs}s per run, ${BENCH_ROUNDS:-3} rounds of: $([ -n "${BENCH_PAIR:-}" ] && echo "none and webhook side by side (BENCH_PAIR)" || echo "${BENCH_MODES:-none idle webhook curl ami}")$([ -n "${BENCH_PIN:-}" ] && echo ", pinned (BENCH_PIN)")" | tee -a "$ROUNDS" "$RESULTS"
    header
    local r round m
    for r in $rates; do
        for round in $(seq 1 "${BENCH_ROUNDS:-3}"); do
            if [ -n "${BENCH_PAIR:-}" ]; then run_pair "$r" "$secs" "$round"; continue; fi
            for m in ${BENCH_MODES:-none idle webhook curl ami}; do run_mode "$m" "$r" "$secs" "$round"; done
        done
    done
    summarize "$from"
}

cmd_outage() {
    local down=${1:-120} rate=${2:-5}
    setup webhook3
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
    target/release/examples/load_receiver "127.0.0.1:$RECV" --seconds 900 --idle-exit 5 >"$B/recv.json" 2>"$B/recv.progress" &
    local rpid=$!
    pids+=($rpid)
    local start; start=$(date +%s.%N)
    while :; do
        local reqs; reqs=$(tail -n 1 "$B/recv.progress" 2>/dev/null | sed -n 's/.*requests=\([0-9]*\).*/\1/p')
        # 3 endpoints × (start, answer, end) per call
        if [ -n "$reqs" ] && [ "$reqs" -ge $(( ok * 9 )) ]; then break; fi
        if awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { exit !(n - s > 600) }'; then echo "drain did not finish in 600 s" | tee -a "$RESULTS"; break; fi
        sleep 0.5
    done
    wait "$rpid" 2>/dev/null || true
    # The wait before the first arrival is the retry schedule's (the next retry of the oldest
    # delivery); from then on the spool drains as fast as it can.
    awk -v s="$start" -F'[{:,}]' '{ for (i = 1; i < NF; i++) v[$i] = $(i + 1) }
        END { n = v["\"requests\""]; f = v["\"first_ms\""] / 1000; l = v["\"last_ms\""] / 1000;
              printf "drained %d requests (%d calls): first arrived %.1f s after the endpoint came back, then %.2f s from first to last = %.0f requests/s\n",
                  n, v["\"distinct_calls\""], f - s, l - f, (l > f) ? (n - 1) / (l - f) : 0 }' "$B/recv.json" | tee -a "$RESULTS"
    echo "asterisk_rss_kb=$(rss_kb)" | tee -a "$RESULTS"
}

case "${1:-load}" in
    load) shift || true; cmd_load "$@" ;;
    outage) shift; cmd_outage "$@" ;;
    smoke) BENCH_ROUNDS=1 cmd_load 5 4 ;;
    summary) summarize "${2:-1}" ;;   # the table of medians again, from line N of rounds.txt
    *) sed -n '2,30p' "$0"; exit 2 ;;
esac

#!/usr/bin/env bash
# Shows res_webhook working, end to end, on a fresh Debian machine (as root):
# builds the module, starts the real Asterisk 22 in the sandbox with it, places calls with
# SIPp (answered, busy, data from the IVR, outbound, a queue, a blind transfer, follow-me to a
# mobile), and prints the webhooks a local receiver got, then `webhook show status`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

asterisk/sandbox.sh deps
asterisk/sandbox.sh ensure
command -v cargo >/dev/null || { echo "demo.sh: needs a Rust toolchain (cargo)" >&2; exit 1; }
ASTERISK_INCLUDE_DIR="$(asterisk/sandbox.sh include-dir)"
export ASTERISK_INCLUDE_DIR
echo "== building res_webhook"
cargo build --release --lib --example webhook_receiver 2>&1 | tail -n 1

DEMO="$REPO/target/demo"
SIP=25060; UAS_ANSWER=25061; UAS_BUSY=25062; UAS_RING=25063; UAS_REFER=25064; HTTP=25088; AMI=25038; RECEIVER=25099
rm -rf "$DEMO" && mkdir -p "$DEMO/etc"
for f in tests/asterisk-etc/*.conf; do
    sed -e "s/@SIP_PORT@/$SIP/; s/@HTTP_PORT@/$HTTP/; s/@UAS_ANSWER_PORT@/$UAS_ANSWER/; s/@UAS_BUSY_PORT@/$UAS_BUSY/; s/@UAS_RING_PORT@/$UAS_RING/; s/@UAS_REFER_PORT@/$UAS_REFER/; s/@AMI_PORT@/$AMI/; s/@RTP_START@/26000/; s/@RTP_END@/26198/" \
        "$f" >"$DEMO/etc/$(basename "$f")"
done
cat >"$DEMO/etc/webhook.conf" <<CONF
[general]
internal_contexts = from-internal
timezone = Europe/Moscow

; A CRM that takes JSON: every event (and transfers), with the call's fields, who handled the
; call, and data set in the dialplan.
[crm]
type = webhook
url = http://127.0.0.1:$RECEIVER/crm?src=pbx
format = json
events = start, answer, transfer, end
param = call_id => \${call_id}
param = event => \${event}
param = direction => \${direction}
param = caller => \${caller}
param = called => \${called}
param = ext => \${ext}
param = status => \${status}
param = duration => \${duration}
param = wait_duration => \${wait_duration}
param = time_start => \${time_start}
param = answered_by => \${answered_by}
param = agents => \${agents}
param = targets => \${targets}
param = transferred_from => \${transferred_from}
param = queue => \${queue}
param = queue_wait => \${queue_wait}
param = hangup_by => \${hangup_by}
param = forwarded_to => \${forwarded_to}
param = visit.utm_source => \${UTM_SOURCE}
secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

; An analytics service that wants a GET at the end of each call.
[analytics]
type = webhook
url = http://127.0.0.1:$RECEIVER/analytics
method = GET
events = end
param = id => \${call_id}
param = from => \${caller}
param = status => \${status}
param = talk => \${duration}
param = agents => \${agents}
CONF

pids=()
cleanup() {
    asterisk/sandbox.sh stop "$DEMO" >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

target/release/examples/webhook_receiver "127.0.0.1:$RECEIVER" >"$DEMO/received.txt" 2>/dev/null &
pids+=($!)
for s in "uas_answer.xml $UAS_ANSWER -d 1000" "uas_busy.xml $UAS_BUSY" "uas_ring.xml $UAS_RING" "uas_refer.xml $UAS_REFER -s 100"; do
    set -- $s
    sipp -sf "tests/sipp/$1" -i 127.0.0.1 -p "$2" "${@:3}" -aa -nostdin -nd >/dev/null 2>&1 &
    pids+=($!)
done

echo "== starting Asterisk 22 with res_webhook"
asterisk/sandbox.sh install-module target/release/libres_webhook.so
asterisk/sandbox.sh start "$DEMO"
asterisk/sandbox.sh cli "$DEMO" "module show like res_webhook"

call() { # caller did scenario ms what
    echo "== call: $5"
    sipp -sf "tests/sipp/$3" -key caller "$1" -s "$2" "127.0.0.1:$SIP" -i 127.0.0.1 -p 25070 \
        -m 1 -d "$4" -aa -nostdin -nd >/dev/null 2>&1 || echo "   (sipp reported a failed call)"
}
call 79161234567 74951234567 uac.xml 2000 "79161234567 calls the DID, extension 100 answers, 2 s talk"
call 79169990000 74951234568 uac.xml 1000 "79169990000 calls, extension 101 is busy"
call 79160000001 74951234572 uac.xml 2000 "79160000001 calls, the IVR sets WEBHOOK(UTM_SOURCE)=google, 100 answers"
call 201 84951112233 uac.xml 1500 "extension 201 calls out to 84951112233"
call 79160000002 74951234601 uac.xml 2000 "79160000002 calls the sales queue: 100 and 102 ring, 100 answers"
call 79160000003 74951234608 uac.xml 4000 "79160000003 calls, 104 answers and transfers the call to 100 (SIP REFER)"
call 79160000004 74951234612 uac.xml 2000 "79160000004 calls 102, who does not answer in 2 s: follow-me to the mobile 79990001111"
sleep 1

echo
echo "== webhooks the receiver got"
cat "$DEMO/received.txt"
echo "== webhook show status"
asterisk/sandbox.sh cli "$DEMO" "webhook show status"

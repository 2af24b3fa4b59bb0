#!/usr/bin/env bash
# The real Asterisk 22 for tests and the demo: Debian sid's asterisk packages in a debootstrap
# chroot (Debian bookworm has no Asterisk), started in a private mount namespace so nothing
# leaks onto the host. Run as root.
#
#   sandbox.sh deps                 install host prerequisites (debootstrap, sipp, libclang, …)
#   sandbox.sh ensure               build the sandbox once (cached in $RW_CACHE)
#   sandbox.sh include-dir          print the Asterisk headers folder (for ASTERISK_INCLUDE_DIR)
#   sandbox.sh root                 print the sandbox's root folder (Debian sid, for chroot)
#   sandbox.sh install-module SO    copy a built module into the sandbox's module directory
#   sandbox.sh start INSTANCE       start Asterisk with INSTANCE/etc as /etc/asterisk
#   sandbox.sh cli INSTANCE CMD     run one CLI command (asterisk -rx)
#   sandbox.sh stop INSTANCE        stop gracefully (bounded), then kill
#   sandbox.sh kill9 INSTANCE       SIGKILL Asterisk (crash tests)
#
# An INSTANCE folder holds etc/ (the configuration), and gets spool/ (kept across restarts:
# the module's durable spool lives there), log/, run/ and asterisk.pid.
set -euo pipefail

CACHE="${RW_CACHE:-/var/cache/res_webhook}"
ROOT="$CACHE/sandbox"
INCLUDE="$CACHE/include"
MODDIR=/usr/lib/x86_64-linux-gnu/asterisk/modules

die() { echo "sandbox.sh: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount namespaces)"; }

mirror() {
    # The Debian mirror the host already uses (the only one reachable here).
    local uri
    uri=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -v security | head -n1 | awk '{print $NF}') || true
    echo "${uri:-http://deb.debian.org/debian}"
}

cmd_deps() {
    need_root
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v sipp >/dev/null || missing+=(sip-tester)
    command -v unshare >/dev/null || missing+=(util-linux)
    command -v nsenter >/dev/null || missing+=(util-linux)
    command -v cc >/dev/null || missing+=(gcc)
    # libclang itself (bindgen loads it); libclang-cpp, which other packages bring, is not it.
    [ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang.so* /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so* >/dev/null 2>&1 \
        || ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || missing+=(libclang-dev)
    command -v openssl >/dev/null || missing+=(openssl)
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    # The live tests' real clients: an AMI library and Prometheus' own text-format parser,
    # for Debian's python3 (/usr/bin/python3; the tests call it by that path).
    /usr/bin/python3 -c 'import panoramisk' 2>/dev/null || missing+=(python3-panoramisk)
    /usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null || missing+=(python3-prometheus-client)
    command -v dpkg-deb >/dev/null || missing+=(dpkg)
    command -v nats-server >/dev/null || missing+=(nats-server)   # the fleet tests' JetStream
    if [ ${#missing[@]} -gt 0 ]; then
        echo "sandbox.sh: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

cmd_ensure() {
    need_root
    if [ ! -f "$ROOT/.complete" ]; then
        command -v debootstrap >/dev/null || cmd_deps
        local tmp="$ROOT.tmp.$$"
        rm -rf "$tmp"
        mkdir -p "$CACHE"
        echo "sandbox.sh: building the Debian sid + Asterisk 22 sandbox in $ROOT (about a minute)"
        debootstrap --variant=minbase --include=asterisk,asterisk-modules,asterisk-dev \
            sid "$tmp" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 20 "$CACHE/debootstrap.log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
        touch "$tmp/.complete"
        rm -rf "$ROOT"
        mv "$tmp" "$ROOT"
        rm -rf "$INCLUDE"
    fi
    if [ ! -f "$INCLUDE/asterisk.h" ]; then
        # Only Asterisk's headers: the sandbox's whole usr/include would mix sid's libc headers in.
        rm -rf "$INCLUDE.tmp" && mkdir -p "$INCLUDE.tmp"
        cp -a "$ROOT/usr/include/asterisk.h" "$ROOT/usr/include/asterisk" "$INCLUDE.tmp/"
        rm -rf "$INCLUDE" && mv "$INCLUDE.tmp" "$INCLUDE"
    fi
    # Asterisk resolves these on every call; without them each lookup blocks (ASTERISK-NOTES).
    local h
    for h in "$(hostname)" A.ROOT-SERVERS.NET; do
        grep -qE "^127\.0\.0\.1[[:space:]]+$h\$" "$ROOT/etc/hosts" 2>/dev/null || echo "127.0.0.1 $h" >>"$ROOT/etc/hosts"
    done
}

cmd_include_dir() { echo "$INCLUDE"; }

cmd_install_module() {
    local so="${1:?usage: sandbox.sh install-module path/to/libres_webhook.so}"
    [ -f "$so" ] || die "no module at $so"
    install -m 0644 "$so" "$ROOT$MODDIR/res_webhook.so"
}

pid_of() {
    local inst="$1" pid
    [ -f "$inst/asterisk.pid" ] || return 1
    pid=$(cat "$inst/asterisk.pid")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

cli() {
    local pid="$1"; shift
    nsenter --target "$pid" --mount -- chroot "$ROOT" /usr/sbin/asterisk -rx "$*"
}

# A directory of the sandbox, created when missing, as a path inside the root with every symlink
# resolved by the sandbox's own filesystem (chroot), so it never escapes to the host.
in_root_dir() {
    chroot "$ROOT" /bin/sh -c 'mkdir -p "$1" && readlink -f "$1"' sh "$1"
}

# Why a start failed: the mount/exec errors and Asterisk's console output, then its log.
start_failed() {
    local inst="$1" f
    for f in "$inst/asterisk.log" "$inst/log/messages"; do
        [ -s "$f" ] || continue
        echo "---- last lines of $f" >&2
        tail -n 30 "$f" >&2
    done
}

cmd_start() {
    need_root
    local inst="${1:?usage: sandbox.sh start INSTANCE}"
    inst=$(cd "$inst" && pwd)
    [ -f "$inst/etc/asterisk.conf" ] || die "$inst/etc/asterisk.conf missing"
    [ -f "$ROOT/.complete" ] || die "no sandbox: run sandbox.sh ensure"
    # A stale Asterisk of this instance (from a crashed run) holds its ports and spool. Other
    # instances keep running: a fleet test runs two nodes side by side in one sandbox.
    local p
    for p in $(pgrep -x asterisk || true); do
        [ "$(readlink "/proc/$p/root" 2>/dev/null)" = "$ROOT" ] || continue
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "RW_INSTANCE=$inst" && kill -9 "$p" 2>/dev/null || true
    done
    mkdir -p "$inst/spool" "$inst/log" "$inst/run" "$inst/lib"
    [ -e "$inst/lib/.seeded" ] || { cp -a "$ROOT/var/lib/asterisk/." "$inst/lib/" && touch "$inst/lib/.seeded"; }
    : >"$inst/asterisk.log"
    # Mount points are resolved *inside* the sandbox root: a fresh sid root's var/run is an
    # absolute symlink to /run, and "$ROOT/var/run/..." would resolve into the host's /run.
    local targets=() d resolved
    for d in /etc/asterisk /var/spool/asterisk /var/log/asterisk /var/run/asterisk /var/lib/asterisk /proc; do
        resolved=$(in_root_dir "$d") || die "cannot create $d in the sandbox $ROOT"
        targets+=("$ROOT$resolved")
    done
    # Mounts live in a private namespace: they disappear with the process, whatever happens.
    RW_INSTANCE="$inst" setsid unshare --mount --propagation private -- /bin/bash -c '
        set -e
        inst="$1"; root="$2"
        mount --bind "$inst/etc" "$3"
        mount --rbind "$inst/spool" "$4"   # recursive: a test may mount a tmpfs under it
        mount --bind "$inst/log" "$5"
        mount --bind "$inst/run" "$6"
        mount --bind "$inst/lib" "$7"
        mount -t proc proc "$8"
        exec chroot "$root" /usr/sbin/asterisk -f -n' bash "$inst" "$ROOT" "${targets[@]}" \
        </dev/null >>"$inst/asterisk.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$inst/asterisk.pid"
    local i
    for i in $(seq 1 120); do
        kill -0 "$pid" 2>/dev/null || { start_failed "$inst"; die "Asterisk exited during start (its output is above; full log: $inst/asterisk.log)"; }
        if cli "$pid" "core waitfullybooted" 2>/dev/null | grep -q "fully booted"; then
            return 0
        fi
        sleep 0.25
    done
    start_failed "$inst"
    cmd_kill9 "$inst"
    die "Asterisk did not finish booting within 30 s"
}

cmd_cli() {
    local inst="${1:?usage: sandbox.sh cli INSTANCE COMMAND}"; shift
    local pid
    pid=$(pid_of "$inst") || die "Asterisk of $inst is not running"
    cli "$pid" "$*"
}

cmd_stop() {
    local inst="${1:?usage: sandbox.sh stop INSTANCE}" pid i
    pid=$(pid_of "$inst") || { rm -f "$inst/asterisk.pid"; return 0; }
    cli "$pid" "core stop now" >/dev/null 2>&1 || true
    for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$inst/asterisk.pid"; return 0; }
        sleep 0.25
    done
    echo "sandbox.sh: Asterisk did not stop within 15 s; killing it" >&2
    cmd_kill9 "$inst"
}

cmd_kill9() {
    local inst="${1:?usage: sandbox.sh kill9 INSTANCE}" pid i
    pid=$(pid_of "$inst") || return 0
    kill -9 "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    rm -f "$inst/asterisk.pid"
}

case "${1:-}" in
    deps) cmd_deps ;;
    ensure) cmd_ensure ;;
    include-dir) cmd_include_dir ;;
    root) echo "$ROOT" ;;
    install-module) shift; cmd_install_module "$@" ;;
    start) shift; cmd_start "$@" ;;
    cli) shift; cmd_cli "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    kill9) shift; cmd_kill9 "$@" ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

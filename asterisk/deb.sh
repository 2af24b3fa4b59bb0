#!/usr/bin/env bash
# Builds the Debian package of res_webhook against the Asterisk whose headers are in
# ASTERISK_INCLUDE_DIR (default: the sandbox's, i.e. Debian sid's asterisk 22):
#
#   asterisk/deb.sh [OUTDIR]        -> OUTDIR/res_webhook_<version>_amd64.deb (default target/deb)
#
# The package installs res_webhook.so into Asterisk's module directory and the sample
# configuration (and the Grafana dashboard) under /usr/share/doc/res_webhook. It depends on the
# exact Asterisk ABI it was built for: Debian's asterisk package provides
# `asterisk-abi-<AST_BUILDOPT_SUM>`, the checksum of the build options in asterisk/buildopts.h,
# so apt refuses to install it next to an Asterisk it cannot load into. /etc/asterisk/webhook.conf
# is never overwritten: the first install copies the sample there only when no file exists.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-target/deb}")
if [ -z "${ASTERISK_INCLUDE_DIR:-}" ]; then
    ASTERISK_INCLUDE_DIR="$(asterisk/sandbox.sh include-dir)"
    export ASTERISK_INCLUDE_DIR
fi
buildopts="$ASTERISK_INCLUDE_DIR/asterisk/buildopts.h"
[ -f "$buildopts" ] || { echo "deb.sh: no $buildopts (set ASTERISK_INCLUDE_DIR)" >&2; exit 1; }
abi=$(sed -n 's/^#define AST_BUILDOPT_SUM "\([0-9a-f]*\)".*/\1/p' "$buildopts")
[ -n "$abi" ] || { echo "deb.sh: no AST_BUILDOPT_SUM in $buildopts" >&2; exit 1; }
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)

# RES_WEBHOOK_SO packages a module built already (the tests do); else this builds it.
so="${RES_WEBHOOK_SO:-}"
if [ -z "$so" ]; then
    cargo build --release --lib
    so="${CARGO_TARGET_DIR:-target}/release/libres_webhook.so"
fi
# The newest glibc symbol version the module needs (what dpkg-shlibdeps would compute).
glibc=$(objdump -T "$so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)

stage="$OUT/stage"
rm -rf "$stage"
moddir="$stage/usr/lib/x86_64-linux-gnu/asterisk/modules"
doc="$stage/usr/share/doc/res_webhook"
mkdir -p "$moddir" "$doc" "$stage/DEBIAN"
install -m 0644 "$so" "$moddir/res_webhook.so"
strip --strip-debug "$moddir/res_webhook.so"
install -m 0644 asterisk/webhook.conf.sample "$doc/webhook.conf.sample"
[ -f asterisk/grafana-dashboard.json ] && install -m 0644 asterisk/grafana-dashboard.json "$doc/"
install -m 0644 README.md "$doc/README.md"
printf 'res_webhook\nLicense: GPL-2.0-only\n' >"$doc/copyright"

cat >"$stage/DEBIAN/control" <<EOF
Package: res-webhook
Source: res_webhook
Version: $version
Architecture: amd64
Maintainer: res_webhook developers <res_webhook@localhost>
Depends: asterisk-abi-$abi, libc6 (>= $glibc)
Enhances: asterisk
Section: comm
Priority: optional
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Description: Asterisk module: every call to your CRMs as webhooks
 res_webhook sends each call's start, answer and end (through queues, transfers and
 pickups) to CRMs and analytics systems as webhooks, in their own formats (presets for
 Roistat, MANGO OFFICE, CallKeeper, XVB, Ringostat and more), looks contacts up from the
 dialplan with WEBHOOK_LOOKUP() and places click-to-call calls for a CRM. Deliveries never
 block a call: they are queued, retried and spooled to disk.
 .
 Built for the Asterisk whose build options checksum is $abi.
EOF

cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
# The administrator's configuration is never overwritten: the sample is copied only when
# there is no webhook.conf yet.
if [ "$1" = configure ] && [ ! -e /etc/asterisk/webhook.conf ] && [ -d /etc/asterisk ]; then
    cp /usr/share/doc/res_webhook/webhook.conf.sample /etc/asterisk/webhook.conf
    if getent group asterisk >/dev/null; then
        chgrp asterisk /etc/asterisk/webhook.conf && chmod 0640 /etc/asterisk/webhook.conf
    fi
fi
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst"

mkdir -p "$OUT"
deb="$OUT/res_webhook_${version}_amd64.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"

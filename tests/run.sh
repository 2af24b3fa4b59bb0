#!/usr/bin/env bash
# Runs every test of res_webhook on a fresh Debian machine, as root:
#   - installs what the tests need (debootstrap, sip-tester, libclang-dev, …),
#   - builds (once, cached) the Debian sid sandbox with the real Asterisk 22,
#   - checks formatting and lints,
#   - runs the core's unit tests and the live tests, which load the module into the sandboxed
#     Asterisk and place real SIP calls with SIPp.
# With CI=true a live test whose prerequisites are missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

asterisk/sandbox.sh deps
asterisk/sandbox.sh ensure
ASTERISK_INCLUDE_DIR="$(asterisk/sandbox.sh include-dir)"
export ASTERISK_INCLUDE_DIR

cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
mkdir -p target
cargo test --release "$@" 2>&1 | tee target/test-output.txt
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.txt

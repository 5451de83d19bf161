#!/usr/bin/env bash
# Wall time (process start to exit) of `pki enroll` creating one X.509
# enrollment group against `pki emulator`, versus the Node sample from the
# docs (benches/node/create_enrollment_group.js) doing the same create, in
# one run. Both talk HTTPS to the same emulator on 127.0.0.1.
#
# Needs: a release build (cargo build --release), node, and
#   npm ci --prefix tests/node
# Usage: benches/enroll.sh [RUNS]   (default 20 runs each, interleaved)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
PKI=${PKI:-target/release/pki}
[ -x "$PKI" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -d tests/node/node_modules/azure-iot-provisioning-service ] || {
  echo "npm ci --prefix tests/node" >&2; exit 2; }

WORK=$(mktemp -d)
EMU_PID=
cleanup() { [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$PKI" emulator --in-memory --listen 127.0.0.1:0 --json --data "$WORK/emu" > "$WORK/emu.json" 2>/dev/null &
EMU_PID=$!
for _ in $(seq 100); do [ -s "$WORK/emu.json" ] && break; sleep 0.05; done
field() { python3 -c "import json,sys; print(json.load(open('$WORK/emu.json'))['$1'])"; }
CS=$(field connectionString); HOST=$(field serviceHost); CA=$(field caFile)
PORT=${HOST##*:}
"$PKI" chain new --out "$WORK/chain" --devices 0 >/dev/null 2>&1
CERT="$WORK/chain/certs/azure-iot-test-only.intermediate.cert.pem"
# The Node SDK dials 443 only: HostName without port + a preload that redirects.
NODE_CS=${CS/HostName=$HOST/HostName=localhost}
PRELOAD="$PWD/tests/node/client_port_preload.js"

now() { date +%s%N; }
pki_ms=(); node_ms=()
for i in $(seq "$RUNS"); do
  t0=$(now)
  DPS_CONNECTION_STRING="$CS" "$PKI" enroll "pki-$i" --cert "$CERT" --ca-file "$CA" >/dev/null
  t1=$(now)
  out=$(NODE_PATH="$PWD/tests/node/node_modules" NODE_EXTRA_CA_CERTS="$CA" PKI_DPS_PORT="$PORT" \
    NODE_OPTIONS="--require $PRELOAD" node benches/node/create_enrollment_group.js "$NODE_CS" "$CERT" "node-$i")
  t2=$(now)
  # The sample exits 0 even on failure: check what it printed (§11.7 #9).
  grep -q 'updated enrollment record returned' <<<"$out" || { echo "node sample failed: $out" >&2; exit 1; }
  pki_ms+=($(( (t1 - t0) / 1000 ))); node_ms+=($(( (t2 - t1) / 1000 )))
done

stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1; s+=$1} END {printf "median %.1f ms, mean %.1f ms, min %.1f ms, max %.1f ms", a[int((NR+1)/2)]/1000, s/NR/1000, a[1]/1000, a[NR]/1000}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "runs: $RUNS each, interleaved, against pki emulator on 127.0.0.1 (HTTPS)"
echo "pki enroll (GET + PUT create):             $(stats "${pki_ms[@]}")"
echo "node create_enrollment_group.js (PUT + PUT): $(stats "${node_ms[@]}")"
awk -v p="$(median "${pki_ms[@]}")" -v n="$(median "${node_ms[@]}")" 'BEGIN {printf "speed-up (median): %.1fx\n", n/p}'

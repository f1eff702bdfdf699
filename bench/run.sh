#!/bin/bash
# twofactor benchmarks, every figure a ratio measured side by side in one run:
# the storage baseline; send+verify pairs on an empty store and on a store
# pre-filled with a service's history (1,000,000 requests), at 1, 16 and 64
# clients; daemon RSS idle and at peak; a CLI round trip against /bin/true;
# email deliveries through the SES driver to a loopback mock on the
# pre-filled store; the privacy figures; HTTPS pairs next to Varlink pairs
# on one daemon; on a throwaway PostgreSQL, pgbench TPC-B next to pairs on
# one node and on three. See bench/README.md.
#
#   bench/run.sh            # everything, about 20 minutes on a quiet 2-core machine (PG=0 HTTPS=0: 15)
#   bench/run.sh --tiny     # every program for a second or two, as TAP (a test in the suite)
#
# Environment: BUILD_DIR (default: build), PAIRS (5000) per loadgen run,
# MAX_SECONDS per loadgen run (60), CLIENTS ("1 16 64"), STORE_PAIRS (10000),
# PREFILL_REQUESTS (1000000), PREFILL_SPAN (2592000 s: 30 days), HF_RUNS (200),
# HF_WARMUP (20); SES=0 skips the SES part, SES_SENDS (5000) sends per SES
# run, SES_CLIENTS ("16 64") for sends that wait for the provider,
# SES_NOWAIT_CLIENTS (16) for the wait = false run; PRIVACY=0 skips the privacy part, PRIVACY_ROWS
# (1000000), PRIVACY_BATCH (1000); HTTPS=0 skips the HTTPS part, HTTPS_CLIENTS
# ("16 64"), HTTPS_ROUNDS (3) Varlink and HTTPS runs taken in turn per
# client count (PAIRS split among them, so a drift of the machine falls on
# both alike), KEY_RPM (1000000) the API key's key_requests_per_minute there
# (0: not counted); PG=0 skips the PostgreSQL part (it also skips itself without
# postgresql-15), PG_CLIENTS ("16 64"), PG_SECONDS (30) per pgbench run,
# PGBENCH_SCALE (64), PG_PAIRS (5000) per loadgen run on PostgreSQL,
# PG_SERVER_OPTS (more "-c name=value" for the server, for experiments),
# PG_INITDB_OPTS (more initdb options, e.g. "--locale-provider=icu
# --icu-locale=en-u-ka-shifted" for a server that sorts as most do),
# PG_SETUP_SQL (SQL run on the nodes' database once they are up, before the
# warm-up: an index dropped or a table's fillfactor changed, for experiments),
# PG_STATEMENTS=1 loads pg_stat_statements and prints, after each 3-node
# run, the statements that took the server's time (calls and ms per pair).
# PERF_DIR=DIR records a call-graph profile of the daemon(s) during each
# HTTPS, Varlink and PostgreSQL pair run into DIR/LABEL.data (perf record).
# Only Unix sockets and loopback are used; every step runs under `timeout`;
# the daemons, the mock and the temporary directory are removed on exit.
# Targets are printed, never asserted. With --tiny each step is one TAP case
# ("ok"/"not ok": did the program run and print its result), never a figure.
set -uo pipefail

tiny=0
if [ "${1:-}" = "--tiny" ]; then tiny=1; shift; fi
if [ $# -gt 0 ]; then echo "usage: bench/run.sh [--tiny]" >&2; exit 2; fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}
if [ "$tiny" = 1 ]; then
    pairs=${PAIRS:-20} max_seconds=${MAX_SECONDS:-20} clients_list=${CLIENTS:-"1 4"} store_pairs=${STORE_PAIRS:-20}
    steady_rounds=${STEADY_ROUNDS:-1}
    prefill_requests=${PREFILL_REQUESTS:-300} prefill_span=${PREFILL_SPAN:-3600}
    hf_runs=${HF_RUNS:-3} hf_warmup=${HF_WARMUP:-1} warmup_pairs=10
    ses=${SES:-1} ses_sends=${SES_SENDS:-20} ses_clients_list=${SES_CLIENTS:-"4"} ses_nowait_clients=${SES_NOWAIT_CLIENTS:-4}
    privacy=${PRIVACY:-1} privacy_rows=${PRIVACY_ROWS:-200} privacy_batch=${PRIVACY_BATCH:-50}
    https=${HTTPS:-1} https_clients_list=${HTTPS_CLIENTS:-"4"} https_rounds=${HTTPS_ROUNDS:-1}
    pg=${PG:-1} pg_clients_list=${PG_CLIENTS:-"4"} pg_seconds=${PG_SECONDS:-2} pgbench_scale=${PGBENCH_SCALE:-1}
    pg_pairs=${PG_PAIRS:-20}
else
    pairs=${PAIRS:-5000} max_seconds=${MAX_SECONDS:-60} clients_list=${CLIENTS:-"1 16 64"} store_pairs=${STORE_PAIRS:-10000}
    steady_rounds=${STEADY_ROUNDS:-2}
    prefill_requests=${PREFILL_REQUESTS:-1000000} prefill_span=${PREFILL_SPAN:-2592000}
    hf_runs=${HF_RUNS:-200} hf_warmup=${HF_WARMUP:-20} warmup_pairs=200
    ses=${SES:-1} ses_sends=${SES_SENDS:-5000} ses_clients_list=${SES_CLIENTS:-"16 64"} ses_nowait_clients=${SES_NOWAIT_CLIENTS:-16}
    privacy=${PRIVACY:-1} privacy_rows=${PRIVACY_ROWS:-1000000} privacy_batch=${PRIVACY_BATCH:-1000}
    https=${HTTPS:-1} https_clients_list=${HTTPS_CLIENTS:-"16 64"} https_rounds=${HTTPS_ROUNDS:-3}
    pg=${PG:-1} pg_clients_list=${PG_CLIENTS:-"16 64"} pg_seconds=${PG_SECONDS:-30} pgbench_scale=${PGBENCH_SCALE:-64}
    pg_pairs=${PG_PAIRS:-5000}
fi

# ---- output: human text, or TAP with the text as comments ----
tap_n=0
tap_failed=0
say() {
    if [ "$tiny" = 1 ]; then printf '# == %s\n' "$*"; else printf '\n== %s\n' "$*"; fi
}
show() {  # show TEXT: program output, commented out in TAP
    if [ "$tiny" = 1 ]; then printf '%s\n' "$1" | sed 's/^/# /'; else printf '%s\n' "$1"; fi
}
result() {  # result OK DESCRIPTION
    tap_n=$((tap_n + 1))
    if [ "$1" = 0 ]; then
        [ "$tiny" = 1 ] && echo "ok $tap_n - $2"
    else
        tap_failed=$((tap_failed + 1))
        if [ "$tiny" = 1 ]; then echo "not ok $tap_n - $2"; else echo "run.sh: FAILED: $2" >&2; fi
    fi
}
skip() {  # skip DESCRIPTION REASON
    tap_n=$((tap_n + 1))
    if [ "$tiny" = 1 ]; then echo "ok $tap_n - $1 # SKIP $2"; else echo "run.sh: skipped: $1 ($2)"; fi
}

n_clients=$(wc -w <<<"$clients_list")
n_ses=$(wc -w <<<"$ses_clients_list")
n_https=$(wc -w <<<"$https_clients_list")
n_pg=$(wc -w <<<"$pg_clients_list")
# baseline, prefill, empty daemon + warm-up, pre-filled daemon + warm-up, loadgens (both, each round), hyperfine,
# SES (mock, daemon, warm-up, runs, no-wait run), privacy,
# HTTPS (daemon + key, Varlink and HTTPS per client count),
# PostgreSQL (server, pgbench -i, pgbench runs, nodes + warm-up, 1-node and 3-node runs)
[ "$tiny" = 1 ] && echo "1..$((1 + 1 + 1 + 1 + 2 * n_clients * steady_rounds + 1 + 3 + n_ses + 1 + 1 + 1 + 2 * n_https * https_rounds + 3 + 3 * n_pg))"

# ---- build if needed (not in --tiny: the test suite has built everything) ----
if [ "$tiny" = 0 ]; then
    if [ ! -f "$build/build.ninja" ]; then
        say "configuring $build"
        meson setup "$build" "$root" >/dev/null || exit 1
    fi
    say "building (ninja -C $build daemon, cli, bench)"
    timeout 900 ninja -C "$build" daemon/twofactord cli/twofactor bench/twofactor-loadgen bench/twofactor-store-baseline \
        bench/twofactor-mock-ses bench/twofactor-bench-privacy bench/twofactor-prefill lib/twofactor-phone.so >/dev/null || exit 1
fi
daemon_bin=$build/daemon/twofactord
cli_bin=$build/cli/twofactor
loadgen=$build/bench/twofactor-loadgen
baseline=$build/bench/twofactor-store-baseline
mock_ses=$build/bench/twofactor-mock-ses
prefill=$build/bench/twofactor-prefill
privacy_bin=$build/bench/twofactor-bench-privacy
for b in "$daemon_bin" "$cli_bin" "$loadgen" "$baseline" "$mock_ses" "$prefill" "$privacy_bin"; do
    [ -x "$b" ] || { echo "Bail out! $b was not built"; exit 1; }
done

# ---- temporary directory and cleanup ----
tmp=$(mktemp -d "${TMPDIR:-/tmp}/twofactor-bench.XXXXXX")
chmod 700 "$tmp"
daemon_pid=
stop_daemon() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    [ -z "$daemon_pid" ] || wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=
}
mock_pid=
stop_mock() {
    if [ -n "$mock_pid" ] && kill -0 "$mock_pid" 2>/dev/null; then
        kill -TERM "$mock_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$mock_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$mock_pid" 2>/dev/null || true
    fi
    [ -z "$mock_pid" ] || wait "$mock_pid" 2>/dev/null || true
    mock_pid=
}
pg_bin=/usr/lib/postgresql/15/bin
pg_root= pg_started=0
declare -a node_pids=()
stop_nodes() {
    local p
    for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${node_pids[@]}"; do
        for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    node_pids=()
}
# as_pg_user CMD...: initdb refuses root, so the server runs as nobody.
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u nobody -- env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 HOME="$pg_root" "$@"
    else env LC_ALL=C.UTF-8 "$@"; fi
}
stop_pg() {
    if [ "$pg_started" = 1 ]; then
        as_pg_user "$pg_bin/pg_ctl" -D "$pg_root/data" -m fast -w stop >/dev/null 2>&1 || true
        pg_started=0
    fi
    [ -z "$pg_root" ] || rm -rf "$pg_root"
    pg_root=
}
declare -A daemon_pids  # the steady-state daemons, by label
cleanup() {
    stop_daemon
    for label in "${!daemon_pids[@]}"; do daemon_pid=${daemon_pids[$label]}; stop_daemon; done
    stop_nodes
    stop_mock
    stop_pg
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- a daemon like the embedded default, with room for 64+ connections ----
# write_config NAME STATE_DIR [EXTRA_TOML]: $tmp/NAME/twofactord.toml; sets socket, state, config.
write_config() {
    local name=$1 dir=$tmp/$1
    state=$2
    mkdir -p -m 700 "$dir"
    socket=$dir/twofactord.sock
    config=$dir/twofactord.toml
    if [ ${#socket} -gt 107 ]; then echo "Bail out! socket path too long: $socket (set TMPDIR)"; exit 1; fi
    cat >"$config" <<EOF
# The embedded default's settings, written out so the connection limit can be raised.
[daemon]
socket = "$socket"
state_dir = "$state"
generate_keys = true
synchronous = "full"
log_level = "info"

[limits]
max_connections_per_uid = 256

[access.admin]
users = ["$(id -u)"]

# Throughput, not abuse: loadgen sends to user0@, user1@, ... again in every
# run against one daemon, faster than the per-app cap; the pre-filled
# history sends from a few NAT addresses.
[apps.default.rate_limits]
resend_cooldown = 0
destination_sends = 1000000
app_sends = 1000000
app_window = 1
ip_sends = 1000000
prefix_sends = 1000000

[apps.default]
display_name = "twofactor"
${3:-channels = [\"email\", \"whatsapp\"]}
EOF
}
# start_daemon NAME: starts the daemon of $tmp/NAME/twofactord.toml and waits for its socket.
start_daemon() {
    local dir=$tmp/$1
    "$daemon_bin" --config "$dir/twofactord.toml" >"$dir/daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 1 600); do
        [ -S "$socket" ] && return 0
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.1
    done
    show "$(tail -20 "$dir/daemon.log")"
    stop_daemon
    return 1
}
# rss FIELD: VmRSS or VmHWM of the running daemon, in MiB.
rss() { awk -v f="$1:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$daemon_pid/status" 2>/dev/null; }
# pss: its proportional set size now (shared library pages divided among the processes mapping them), in MiB.
pss() { awk '$1 == "Pss:" { printf "%.1f", $2 / 1024 }' "/proc/$daemon_pid/smaps_rollup" 2>/dev/null; }

# field NAME LINE: the value of NAME=... in a RESULT line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

declare -A rate p50 p99 pmax errs okc
last_id=
run_loadgen() {  # run_loadgen LABEL CLIENTS
    local label=$1 c=$2 out line
    out=$(timeout $((max_seconds + 60)) "$loadgen" --socket "$socket" --outbox "$state/outbox" \
        --clients "$c" --pairs "$pairs" --duration "$max_seconds")
    local rc=$?
    show "$(grep -v '^RESULT' <<<"$out")"
    line=$(grep '^RESULT' <<<"$out")
    if [ -z "$line" ]; then result 1 "loadgen $label: $c client(s) (no result, exit $rc)"; return; fi
    rate[$label]=$(field pairs_per_s "$line")
    p50[$label]=$(field p50_ms "$line")
    p99[$label]=$(field p99_ms "$line")
    pmax[$label]=$(field max_ms "$line")
    errs[$label]=$(field errors "$line")
    okc[$label]=$(field ok "$line")
    last_id=$(field last_id "$line")
    result "$rc" "loadgen $label: $c client(s), ${rate[$label]} pairs/s"
}
warm_up() {
    timeout 120 "$loadgen" --socket "$socket" --outbox "$state/outbox" --clients 4 --pairs "$warmup_pairs" >/dev/null
}
declare -A rss_idle rss_peak pss_idle

# ---- 1. the storage baseline ----
say "store baseline: $store_pairs INSERT+UPDATE pairs per measurement (at most 15 s each)"
mkdir -m 700 "$tmp/store"
baseline_out=$(timeout 300 "$baseline" --pairs "$store_pairs" --max-seconds 15 --dir "$tmp/store")
rc=$?
show "$(grep -v '^RESULT' <<<"$baseline_out")"
base() { field pairs_per_s "$(grep "^RESULT mode=$1 " <<<"$baseline_out")"; }
raw_normal=$(base raw-normal)
raw_full=$(base raw-full)
[ -n "$raw_normal" ] || rc=1
result "$rc" "store baseline (raw NORMAL ${raw_normal:-n/a} pairs/s)"

# ---- 2. steady state: the same loadgen runs on an empty and on a pre-filled store, taking turns ----
# Both daemons run at once (the idle one costs nothing); at each client count
# the two take turns, STEADY_ROUNDS runs each of PAIRS / rounds pairs, and each
# side is its pairs over its summed time: a drift of the machine falls on both.
write_config pre "$tmp/pre/state"
if [ -n "${PREFILL_FROM:-}" ]; then
    # A state directory an earlier twofactor-prefill made with this script's
    # configuration (its keys inside): the fill takes most of a full run.
    say "prefill: a copy of $PREFILL_FROM (PREFILL_FROM)"
    mkdir -p -m 700 "$state" && cp -a "$PREFILL_FROM/." "$state/" && [ -s "$state/twofactor.db" ]
    rc=$?
    prefill_out="RESULT seconds=copied"
    : >"$tmp/prefill.log"
else
    say "prefill: $prefill_requests requests over $prefill_span s (twofactor-prefill)"
    prefill_out=$(timeout 7200 "$prefill" --config "$config" --requests "$prefill_requests" --span-seconds "$prefill_span" 2>"$tmp/prefill.log")
    rc=$?
fi
show "$(grep -v '^RESULT' <<<"$prefill_out")"
[ "$rc" = 0 ] || show "$(tail -5 "$tmp/prefill.log")"
prefill_line=$(grep '^RESULT' <<<"$prefill_out")
prefill_seconds=$(field seconds "$prefill_line")
prefill_db_mib=$(du -m "$state/twofactor.db" 2>/dev/null | cut -f1)
if [ -n "${PREFILL_FROM:-}" ]; then result "$rc" "pre-filled store copied (${prefill_db_mib:-?} MiB)"
else result "$rc" "prefill of $prefill_requests requests (${prefill_seconds:-n/a} s, ${prefill_db_mib:-?} MiB)"; fi

use_daemon() {  # use_daemon LABEL: the socket, state directory and pid the helpers above act on
    socket=$tmp/$1/twofactord.sock
    state=$tmp/$1/state
    daemon_pid=${daemon_pids[$1]:-}
}
steady_start() {  # steady_start LABEL: daemon of $tmp/LABEL, idle RSS, warm-up
    local label=$1
    write_config "$label" "$tmp/$label/state"
    if ! start_daemon "$label"; then
        result 1 "daemon on the $label store started"
        return 1
    fi
    daemon_pids[$label]=$daemon_pid
    rss_idle[$label]=$(rss VmRSS)
    pss_idle[$label]=$(pss)
    warm_up
    result $? "daemon on the $label store started, idle RSS ${rss_idle[$label]} MiB, warm-up"
}
say "daemons (synchronous = full) on an empty and on the pre-filled store, $steady_rounds rounds each per client count"
steady_start empty
steady_start pre
round_pairs=$(( (pairs + steady_rounds - 1) / steady_rounds ))
all_pairs=$pairs
pairs=$round_pairs
for c in $clients_list; do
    for r in $(seq 1 "$steady_rounds"); do
        for s in empty pre; do
            l=$s-$c.$r
            if [ -z "${daemon_pids[$s]:-}" ]; then result 1 "loadgen $l (no daemon)"; continue; fi
            use_daemon "$s"
            say "loadgen ($s store, round $r): $c client(s), $pairs pairs (at most ${max_seconds} s)"
            run_loadgen "$l" "$c"
        done
    done
    # Each side: its pairs over its summed time, the median p50, the highest p99 and max.
    for s in empty pre; do
        ok=0 secs=0 e=0 p50s="" p99s="" maxs=""
        for r in $(seq 1 "$steady_rounds"); do
            l=$s-$c.$r
            [ -n "${rate[$l]:-}" ] || continue
            n=${okc[$l]:-0}
            ok=$((ok + n)) e=$((e + ${errs[$l]:-0}))
            secs=$(awk -v a="$secs" -v n="$n" -v r="${rate[$l]}" 'BEGIN { printf "%.6f", (r > 0) ? a + n / r : a }')
            p50s="$p50s ${p50[$l]}" p99s="$p99s ${p99[$l]}" maxs="$maxs ${pmax[$l]}"
        done
        [ "$ok" -gt 0 ] || continue
        rate[$s-$c]=$(awk -v n="$ok" -v t="$secs" 'BEGIN { if (t > 0) printf "%.1f", n / t }')
        p50[$s-$c]=$(tr ' ' '\n' <<<"$p50s" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
        p99[$s-$c]=$(tr ' ' '\n' <<<"$p99s" | sed '/^$/d' | sort -g | tail -1)
        pmax[$s-$c]=$(tr ' ' '\n' <<<"$maxs" | sed '/^$/d' | sort -g | tail -1)
        errs[$s-$c]=$e
    done
done
pairs=$all_pairs
for s in empty pre; do
    use_daemon "$s"
    [ -n "$daemon_pid" ] || continue
    rss_peak[$s]=$(rss VmHWM)
    say "$s store: daemon RSS idle ${rss_idle[$s]} MiB, peak (VmHWM) ${rss_peak[$s]} MiB"
done
use_daemon empty
stop_daemon
unset 'daemon_pids[empty]'
use_daemon pre

if [ -n "$daemon_pid" ]; then
    # ---- CLI round trip vs /bin/true (same daemon, a finished request) ----
    hf_verify_ms= hf_true_ms=
    if ! command -v hyperfine >/dev/null; then
        skip "hyperfine round trip" "hyperfine is not installed"
    elif [ -z "$last_id" ] || [ "$last_id" = "-" ]; then
        result 1 "hyperfine round trip (no finished request id)"
    else
        say "hyperfine: twofactor verify --id $last_id --code 000000 (finished request; exits 1) vs /bin/true"
        hf_out=$(timeout 600 hyperfine -N -i --warmup "$hf_warmup" --runs "$hf_runs" --export-json "$tmp/hyperfine.json" \
            "$cli_bin --socket $socket verify --id $last_id --code 000000" /bin/true 2>&1)
        rc=$?
        show "$hf_out"
        if [ -s "$tmp/hyperfine.json" ]; then
            hf_verify_ms=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"]*1000)' "$tmp/hyperfine.json")
            hf_true_ms=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][1]["mean"]*1000)' "$tmp/hyperfine.json")
        else
            rc=1
        fi
        result "$rc" "hyperfine round trip (verify ${hf_verify_ms:-n/a} ms)"
    fi
else
    result 1 "hyperfine round trip (no daemon)"
fi
stop_daemon
unset 'daemon_pids[pre]'

# ---- 3. email deliveries through the SES driver to a loopback mock, on the pre-filled store ----
declare -A ses_rate ses_drate ses_p50 ses_p99 ses_errs ses_deliv ses_log
run_ses() {  # run_ses LABEL CLIENTS LOADGEN-FLAGS...
    local label=$1 c=$2 out line
    shift 2
    out=$(timeout $((max_seconds + 180)) "$loadgen" --socket "$socket" --mock-port "$mock_port" \
        --clients "$c" --pairs "$ses_sends" --duration "$max_seconds" --drain-timeout 120 "$@")
    local rc=$?
    show "$(grep -v '^RESULT' <<<"$out")"
    line=$(grep '^RESULT' <<<"$out")
    if [ -z "$line" ]; then result 1 "SES $label (no result, exit $rc)"; return; fi
    ses_rate[$label]=$(field sends_per_s "$line")
    ses_drate[$label]=$(field deliveries_per_s "$line")
    ses_p50[$label]=$(field p50_ms "$line")
    ses_p99[$label]=$(field p99_ms "$line")
    ses_errs[$label]=$(field errors "$line")
    ses_deliv[$label]=$(field delivered "$line")/$(field ok "$line")
    ses_log[$label]=$(field log_accepted "$line")
    result "$rc" "SES $label: ${ses_drate[$label]} deliveries/s"
}
if [ "$ses" != 1 ]; then
    for d in "SES mock" "SES daemon" "SES warm-up" $ses_clients_list "no-wait"; do skip "SES $d" "SES=0"; done
else
    say "SES: twofactor-mock-ses on 127.0.0.1 (no signature checks), daemon with [delivery] email = \"ses\" on the pre-filled store"
    sesdir=$tmp/ses
    mkdir -m 700 "$sesdir"
    # Never real credentials: the mock checks no signature.
    (umask 077; printf 'AKIDBENCHEXAMPLE0000\n' >"$sesdir/aws-access-key-id"
     printf 'benchSecretAccessKeyNotReal0000000000000\n' >"$sesdir/aws-secret-access-key")
    timeout 1800 "$mock_ses" --port-file "$sesdir/mock.port" --max-seconds 1700 >"$sesdir/mock.log" 2>&1 &
    mock_pid=$!
    for _ in $(seq 1 100); do [ -s "$sesdir/mock.port" ] && break; sleep 0.1; done
    mock_port=$(cat "$sesdir/mock.port" 2>/dev/null)
    if [ -n "$mock_port" ]; then result 0 "SES mock listening"; else result 1 "SES mock listening"; fi
    write_config ses "$tmp/pre/state" "channels = [\"email\"]

[delivery]
email = \"ses\"
whatsapp = \"outbox\"

[ses]
region = \"eu-west-1\"
endpoint = \"http://127.0.0.1:${mock_port:-1}\"
from = \"Bench <bench@example.com>\"
access_key_id_file = \"$sesdir/aws-access-key-id\"
secret_access_key_file = \"$sesdir/aws-secret-access-key\"
timeout = 10"
    if [ -n "$mock_port" ] && start_daemon ses; then
        result 0 "SES daemon on the pre-filled store started"
        timeout 120 "$loadgen" --socket "$socket" --send-only --clients 4 --pairs "$warmup_pairs" >/dev/null
        result $? "SES warm-up"
        for c in $ses_clients_list; do
            say "SES: $c client(s), $ses_sends sends, each waiting for the provider's answer"
            run_ses "wait-$c" "$c" --send-only
        done
        say "SES: $ses_nowait_clients client(s), $ses_sends sends with wait = false (--no-wait)"
        run_ses "no-wait-$ses_nowait_clients" "$ses_nowait_clients" --no-wait
    else
        result 1 "SES daemon on the pre-filled store started"
        result 1 "SES warm-up"
        for c in $ses_clients_list; do result 1 "SES wait-$c (no daemon)"; done
        result 1 "SES no-wait (no daemon)"
    fi
    stop_daemon
    stop_mock
    show "$(grep -v '^RESULT' "$sesdir/mock.log")"
fi

# ---- 4. privacy: subject export and retention purge ----
privacy_export= privacy_purge=
if [ "$privacy" != 1 ]; then
    skip "privacy bench" "PRIVACY=0"
else
    say "privacy: $privacy_rows expired requests with a delivery attempt each; export of one subject; purge (batch $privacy_batch) with verifies going on"
    privacy_out=$(timeout 3600 "$privacy_bin" --rows "$privacy_rows" --batch "$privacy_batch" --dir "$tmp")
    rc=$?
    show "$(grep -v '^RESULT' <<<"$privacy_out")"
    privacy_export=$(sed -n 's/^RESULT bench=export .*p99_ms=\([0-9.]*\).*/\1/p' <<<"$privacy_out")
    privacy_purge=$(sed -n 's/^RESULT bench=purge .*seconds=\([0-9.]*\) .*verify_p99_ms=\([0-9.]*\).*/\1 s, verify p99 \2 ms/p' <<<"$privacy_out")
    [ -n "$privacy_export" ] || rc=1
    result "$rc" "privacy bench (export p99 ${privacy_export:-n/a} ms)"
fi

# ---- 5. HTTPS: the same pairs over the HTTPS API, next to Varlink, one daemon ----
declare -A https_rate https_p50 https_p99 https_errs https_ok https_dcpu https_lcpu https_secs https_dticks https_lsecs https_scpu
server_pids=()  # the PostgreSQL server's processes while its runs go on: their CPU per pair too
# cpu_ticks PID...: user + system clock ticks the processes have used so far.
cpu_ticks() {
    local p t=0
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$t"
}
# machine_ticks: busy clock ticks of the whole machine so far (every core; /proc/stat).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
declare -A https_mcpu
run_pairs() {  # run_pairs LABEL CLIENTS PAIRS LOADGEN-FLAGS...: sets https_* (any pair run that is not section 2's)
    local label=$1 c=$2 n=$3 out line
    shift 3
    # CPU per pair, the daemons' and the load generator's: unlike pairs/s,
    # it does not depend on how the two share this machine's cores.
    local daemons=(${daemon_pid:-} ${node_pids[@]+"${node_pids[@]}"}) before sbefore
    before=$(cpu_ticks "${daemons[@]}")
    sbefore=$(cpu_ticks ${server_pids[@]+"${server_pids[@]}"})
    local mbefore=$(machine_ticks)
    # PERF_DIR=DIR: a call-graph profile of the daemon(s) per run, DIR/LABEL.data
    # (perf report -i DIR/LABEL.data --no-children), to see where a pair's CPU goes.
    local perf_pid=
    if [ -n "${PERF_DIR:-}" ] && command -v perf >/dev/null; then
        mkdir -p "$PERF_DIR"
        perf record -q -F 999 -g -o "$PERF_DIR/$label.data" -p "$(IFS=,; echo "${daemons[*]}")" \
            >"$PERF_DIR/$label.log" 2>&1 &
        perf_pid=$!
    fi
    out=$( { TIMEFORMAT='%U %S'; time timeout $((max_seconds + 60)) "$loadgen" --clients "$c" --pairs "$n" \
        --duration "$max_seconds" "$@"; } 2>"$tmp/loadgen-cpu.$label")
    local rc=$?
    local dticks=$(( $(cpu_ticks "${daemons[@]}") - before ))
    local sticks=$(( $(cpu_ticks ${server_pids[@]+"${server_pids[@]}"}) - sbefore ))
    local mticks=$(( $(machine_ticks) - mbefore ))
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null; wait "$perf_pid" 2>/dev/null; fi
    show "$(grep -v '^RESULT' <<<"$out")"
    line=$(grep '^RESULT' <<<"$out")
    if [ -z "$line" ]; then result 1 "loadgen $label: $c client(s) (no result, exit $rc)"; return; fi
    https_rate[$label]=$(field pairs_per_s "$line")
    https_p50[$label]=$(field p50_ms "$line")
    https_p99[$label]=$(field p99_ms "$line")
    https_errs[$label]=$(field errors "$line")
    https_ok[$label]=$(field ok "$line")
    local ok=${https_ok[$label]:-0} hz
    hz=$(getconf CLK_TCK)
    # What combine_rounds adds up: the run's seconds and CPU.
    https_secs[$label]=$(awk -v n="$ok" -v r="${https_rate[$label]:-0}" 'BEGIN { if (r > 0) printf "%.6f", n / r; else print 0 }')
    https_dticks[$label]=$dticks
    https_lsecs[$label]=$(tail -1 "$tmp/loadgen-cpu.$label" | awk 'NF == 2 { printf "%.3f", $1 + $2 }')
    if [ "${ok:-0}" -gt 0 ] 2>/dev/null; then
        https_dcpu[$label]=$(awk -v t="$dticks" -v hz="$hz" -v n="$ok" 'BEGIN { printf "%.2f", t * 1000 / hz / n }')
        https_mcpu[$label]=$(awk -v t="$mticks" -v hz="$hz" -v n="$ok" 'BEGIN { printf "%.2f", t * 1000 / hz / n }')
        [ "${#server_pids[@]}" -gt 0 ] &&
            https_scpu[$label]=$(awk -v t="$sticks" -v hz="$hz" -v n="$ok" 'BEGIN { printf "%.2f", t * 1000 / hz / n }')
        https_lcpu[$label]=$(tail -1 "$tmp/loadgen-cpu.$label" |
            awk -v n="$ok" 'NF == 2 { printf "%.2f", ($1 + $2) * 1000 / n }')
    fi
    result "$rc" "loadgen $label: $c client(s), ${https_rate[$label]} pairs/s"
}
# combine_rounds LABEL N: LABEL's figures from runs LABEL.1 .. LABEL.N: pairs/s
# over their summed time, CPU per pair over their summed pairs, the median
# p50 and the highest p99.
combine_rounds() {
    local label=$1 n=$2 r ok=0 secs=0 ticks=0 lsecs=0 errs=0 p50s="" p99s="" hz
    hz=$(getconf CLK_TCK)
    for r in $(seq 1 "$n"); do
        local l="$label.$r"
        [ -n "${https_ok[$l]:-}" ] || return 0
        ok=$((ok + https_ok[$l]))
        errs=$((errs + ${https_errs[$l]:-0}))
        ticks=$((ticks + ${https_dticks[$l]:-0}))
        secs=$(awk -v a="$secs" -v b="${https_secs[$l]:-0}" 'BEGIN { printf "%.6f", a + b }')
        lsecs=$(awk -v a="$lsecs" -v b="${https_lsecs[$l]:-0}" 'BEGIN { printf "%.3f", a + b }')
        p50s="$p50s ${https_p50[$l]:-}"
        p99s="$p99s ${https_p99[$l]:-}"
    done
    [ "$ok" -gt 0 ] || return 0
    https_ok[$label]=$ok
    https_errs[$label]=$errs
    https_rate[$label]=$(awk -v n="$ok" -v t="$secs" 'BEGIN { if (t > 0) printf "%.1f", n / t }')
    https_p50[$label]=$(tr ' ' '\n' <<<"$p50s" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
    https_p99[$label]=$(tr ' ' '\n' <<<"$p99s" | sed '/^$/d' | sort -g | tail -1)
    https_dcpu[$label]=$(awk -v t="$ticks" -v hz="$hz" -v n="$ok" 'BEGIN { printf "%.2f", t * 1000 / hz / n }')
    https_lcpu[$label]=$(awk -v s="$lsecs" -v n="$ok" 'BEGIN { printf "%.2f", s * 1000 / n }')
}
https_round_labels() {  # the TAP names of the Varlink and HTTPS runs
    local c r
    for c in $https_clients_list; do
        for r in $(seq 1 "$https_rounds"); do echo "Varlink-$c.$r"; echo "HTTPS-$c.$r"; done
    done
}
if [ "$https" != 1 ]; then
    skip "HTTPS daemon and API key" "HTTPS=0"
    for l in $(https_round_labels); do skip "$l" "HTTPS=0"; done
elif ! command -v openssl >/dev/null; then
    skip "HTTPS daemon and API key" "openssl is not installed"
    for l in $(https_round_labels); do skip "$l" "no openssl"; done
else
    say "HTTPS: a throwaway CA and a certificate for 127.0.0.1 (openssl), [http] on 127.0.0.1, an API key; empty store"
    tls=$tmp/tls
    mkdir -m 700 "$tls"
    (cd "$tls" && umask 077 &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
            -subj "/CN=twofactor bench CA" &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
            -subj "/CN=127.0.0.1" &&
        printf 'subjectAltName=IP:127.0.0.1\n' >ext.cnf &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
            -extfile ext.cnf) >"$tls/openssl.log" 2>&1
    tls_rc=$?
    # The per-key limit stays on (it is a store counter every HTTPS call pays), set out of the way.
    write_config https "$tmp/https/state" "channels = [\"email\"]

[http]
listen = [\"127.0.0.1:0\"]
cert_file = \"$tls/server.pem\"
key_file = \"$tls/server.key\"
max_connections_per_ip = 256
key_requests_per_minute = ${KEY_RPM:-1000000}"
    https_port=
    if [ "$tls_rc" = 0 ] && start_daemon https; then
        for _ in $(seq 1 100); do
            https_port=$(sed -n 's/.*https: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/https/daemon.log" | head -1)
            [ -n "$https_port" ] && break
            sleep 0.1
        done
        (umask 077; "$cli_bin" --socket "$socket" apikey create --app default --scope send,verify >"$tmp/https/api-key" 2>"$tmp/https/apikey.log")
        key_rc=$?
    fi
    if [ -n "$https_port" ] && [ "${key_rc:-1}" = 0 ] && [ -s "$tmp/https/api-key" ] &&
        timeout 120 "$loadgen" --socket "$socket" --outbox "$state/outbox" --clients 4 --pairs "$warmup_pairs" >/dev/null &&
        timeout 120 "$loadgen" --https "127.0.0.1:$https_port" --ca "$tls/ca.pem" --api-key-file "$tmp/https/api-key" \
            --outbox "$state/outbox" --clients 4 --pairs "$warmup_pairs" >/dev/null; then
        result 0 "HTTPS daemon on 127.0.0.1:$https_port, API key, warm-up over both"
        per_round=$(( (pairs + https_rounds - 1) / https_rounds ))
        for c in $https_clients_list; do
            say "Varlink and HTTPS (TLS 1.3, keep-alive) in turn, $https_rounds round(s): $c client(s), $per_round pairs a run (at most ${max_seconds} s)"
            for r in $(seq 1 "$https_rounds"); do
                run_pairs "varlink-$c.$r" "$c" "$per_round" --socket "$socket" --outbox "$state/outbox"
                run_pairs "https-$c.$r" "$c" "$per_round" --https "127.0.0.1:$https_port" --ca "$tls/ca.pem" \
                    --api-key-file "$tmp/https/api-key" --outbox "$state/outbox"
            done
            combine_rounds "varlink-$c" "$https_rounds"
            combine_rounds "https-$c" "$https_rounds"
        done
    else
        show "$(cat "$tls/openssl.log"; tail -20 "$tmp/https/daemon.log" 2>/dev/null)"
        result 1 "HTTPS daemon and API key (tls $tls_rc, port ${https_port:-none}, key ${key_rc:-not made})"
        for l in $(https_round_labels); do result 1 "$l (no daemon)"; done
    fi
    stop_daemon
fi

# ---- 6. PostgreSQL: pgbench TPC-B, then twofactor on 1 and on 3 nodes, one throwaway server ----
declare -A pgbench_tps pgbench_mcpu
pg_skip() {
    skip "PostgreSQL server" "$1"; skip "pgbench -i" "$1"
    for c in $pg_clients_list; do skip "pgbench-$c" "$1"; done
    skip "PostgreSQL nodes" "$1"
    for c in $pg_clients_list; do skip "pg-1node-$c" "$1"; skip "pg-3node-$c" "$1"; done
}
if [ "$pg" != 1 ]; then
    pg_skip "PG=0"
elif [ ! -x "$pg_bin/initdb" ] || ! command -v pgbench >/dev/null; then
    pg_skip "postgresql-15 is not installed"
else
    say "PostgreSQL 15: a throwaway server as nobody (Unix socket only, fsync = on), pgbench scale $pgbench_scale"
    pg_root=$(mktemp -d "${TMPDIR:-/tmp}/twofactor-bench-pg.XXXXXX")
    chmod 755 "$pg_root"
    [ "$(id -u)" = 0 ] && chown nobody: "$pg_root"
    pg_opts="-c listen_addresses='' -c unix_socket_directories='$pg_root' -c fsync=on -c max_connections=250 -c shared_buffers=128MB ${PG_SERVER_OPTS:-}"
    pg_statements=${PG_STATEMENTS:-0}
    # track_planning: the plans column counts the executions that were planned again (a custom plan).
    [ "$pg_statements" = 1 ] && pg_opts="$pg_opts -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
    if as_pg_user "$pg_bin/initdb" -D "$pg_root/data" -U twofactor -A trust --no-sync -E UTF8 ${PG_INITDB_OPTS:-} >"$tmp/pg-initdb.log" 2>&1 &&
        as_pg_user "$pg_bin/pg_ctl" -D "$pg_root/data" -o "$pg_opts" -l "$pg_root/log" -w start >>"$tmp/pg-initdb.log" 2>&1; then
        pg_started=1
        result 0 "PostgreSQL server on $pg_root"
    else
        show "$(tail -20 "$tmp/pg-initdb.log")"
        result 1 "PostgreSQL server"
    fi
    # The sampler: one line per busy session of the twofactor database every
    # 50 ms (state, wait event or CPU, the statement's start), run in the
    # background under timeout, which passes the TERM that stops it on to psql.
    cat >"$tmp/pg-sample.sql" <<'SQL'
SELECT state || ' ' || coalesce(wait_event_type || ':' || wait_event, 'CPU') || ' | ' ||
    left(regexp_replace(query, '\s+', ' ', 'g'), 70) FROM pg_stat_activity
    WHERE datname = 'postgres' AND state <> 'idle' AND pid <> pg_backend_pid();
\watch 0.05
SQL
    pgb() { timeout $((pg_seconds + 600)) pgbench -h "$pg_root" -U twofactor "$@"; }
    if [ "$pg_started" = 1 ] && psql -X -q -h "$pg_root" -U twofactor -d postgres -c 'CREATE DATABASE pgbench' >/dev/null &&
        out=$(pgb -i -q -I dtGvp -s "$pgbench_scale" pgbench 2>&1); then
        result 0 "pgbench -i -s $pgbench_scale"
        for c in $pg_clients_list; do
            say "pgbench TPC-B: -c $c -j 2 -T $pg_seconds"
            mbefore=$(machine_ticks)
            out=$(pgb -c "$c" -j 2 -T "$pg_seconds" pgbench 2>&1)
            rc=$?
            mticks=$(( $(machine_ticks) - mbefore ))
            show "$(grep -E '^(number of (clients|transactions actually)|latency average|tps)' <<<"$out")"
            pgbench_tps[$c]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
            # The machine's CPU per transaction (pgbench itself included), as for the pairs below.
            pgbench_mcpu[$c]=$(awk -v t="$mticks" -v hz="$(getconf CLK_TCK)" -v tps="${pgbench_tps[$c]:-0}" -v s="$pg_seconds" \
                'BEGIN { if (tps > 0) printf "%.3f", t * 1000 / hz / (tps * s); else print "n/a" }')
            [ -n "${pgbench_tps[$c]}" ] || rc=1
            result "$rc" "pgbench-$c: ${pgbench_tps[$c]:-n/a} tps"
        done
    else
        show "${out:-}"
        result 1 "pgbench -i"
        for c in $pg_clients_list; do result 1 "pgbench-$c (no database)"; done
    fi

    # Three nodes on the server's postgres database; the first makes the keys every node shares, and the schema.
    pg_keys=$tmp/pg-keys
    mkdir -m 700 "$pg_keys"
    (umask 077; printf 'host=%s user=twofactor dbname=postgres\n' "$pg_root" >"$pg_keys/store-dsn")
    pg_sockets=() pg_outboxes=()
    nodes_ok=$pg_started
    for i in 1 2 3; do
        [ "$nodes_ok" = 1 ] || break
        write_config "pg$i" "$tmp/pg$i/state" "channels = [\"email\"]

[store]
backend = \"postgresql\"
dsn_file = \"$pg_keys/store-dsn\"
connections = 8"
        sed -i "s|^generate_keys = true|generate_keys = true\nstore_key_file = \"$pg_keys/store.key\"\npepper_file = \"$pg_keys/pepper.key\"|" "$config"
        if start_daemon "pg$i"; then
            node_pids+=("$daemon_pid")
            daemon_pid=
            pg_sockets+=(--socket "$socket")
            pg_outboxes+=(--outbox "$state/outbox")
        else
            nodes_ok=0
        fi
    done
    pg_sql() { psql -X -q -A -F ' | ' -h "$pg_root" -U twofactor -d postgres -c "$1"; }
    [ "$pg_statements" = 1 ] && [ "$nodes_ok" = 1 ] && pg_sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
    if [ -n "${PG_SETUP_SQL:-}" ] && [ "$nodes_ok" = 1 ]; then
        say "PG_SETUP_SQL: $PG_SETUP_SQL"
        pg_sql "$PG_SETUP_SQL" >/dev/null || nodes_ok=0
    fi
    if [ "$nodes_ok" = 1 ] &&
        timeout 120 "$loadgen" "${pg_sockets[@]}" "${pg_outboxes[@]}" --clients 6 --pairs "$warmup_pairs" >/dev/null; then
        result 0 "three nodes on PostgreSQL started, warm-up"
        # The server's processes (its backends among them: the nodes' connections stay open).
        server_pids=($(pgrep -u "$(stat -c %U "$pg_root/data")" -x postgres))
        for c in $pg_clients_list; do
            say "twofactor on PostgreSQL: $c client(s), $pg_pairs pairs, 1 node (at most ${max_seconds} s)"
            run_pairs "pg1-$c" "$c" "$pg_pairs" "${pg_sockets[@]:0:2}" "${pg_outboxes[@]:0:2}"
            say "twofactor on PostgreSQL: $c client(s), $pg_pairs pairs, spread over 3 nodes (at most ${max_seconds} s)"
            sampler=
            if [ "$tiny" = 0 ]; then
                timeout $((max_seconds + 120)) psql -X -q -A -t -h "$pg_root" -U twofactor -d postgres \
                    -f "$tmp/pg-sample.sql" >"$tmp/pg-waits-$c" 2>/dev/null &
                sampler=$!
            fi
            if [ "$pg_statements" = 1 ]; then
                pg_sql "SELECT pg_stat_statements_reset()" >/dev/null
                pg_sql "DROP TABLE IF EXISTS bench_tables; CREATE TABLE bench_tables AS
                    SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables" >/dev/null
            fi
            run_pairs "pg3-$c" "$c" "$pg_pairs" "${pg_sockets[@]}" "${pg_outboxes[@]}"
            if [ "$pg_statements" = 1 ] && [ -n "${https_rate[pg3-$c]:-}" ]; then
                say "the statements of the 3-node run, $c clients, ${https_ok[pg3-$c]} pairs (pg_stat_statements)"
                show "$(pg_sql "SELECT calls, plans, round(calls::numeric / ${https_ok[pg3-$c]:-1}, 2) AS per_pair,
                    round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms, round(total_plan_time::numeric, 1) AS plan_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 90)
                    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'postgres')
                    ORDER BY total_exec_time DESC LIMIT ${PG_STATEMENTS_ROWS:-15}")"
                # Row versions written a pair, and how many updates were HOT (no index entry written).
                sleep 1  # the statistics collector's view lags a little behind the commits
                say "rows written by the 3-node run, $c clients, per pair (pg_stat_user_tables; hot: updates that wrote no index entry)"
                show "$(pg_sql "SELECT t.relname, round((t.n_tup_ins - b.n_tup_ins)::numeric / ${https_ok[pg3-$c]:-1}, 2) AS ins,
                    round((t.n_tup_upd - b.n_tup_upd)::numeric / ${https_ok[pg3-$c]:-1}, 2) AS upd,
                    round((t.n_tup_hot_upd - b.n_tup_hot_upd)::numeric / ${https_ok[pg3-$c]:-1}, 2) AS hot,
                    round((t.n_tup_del - b.n_tup_del)::numeric / ${https_ok[pg3-$c]:-1}, 2) AS del,
                    (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid) AS indexes
                    FROM pg_stat_user_tables t JOIN bench_tables b USING (relname)
                    WHERE t.n_tup_ins + t.n_tup_upd + t.n_tup_del > b.n_tup_ins + b.n_tup_upd + b.n_tup_del
                    ORDER BY 2 DESC, 3 DESC")"
            fi
            if [ -n "$sampler" ]; then
                kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
                say "where the 3-node run's server sessions were, $c clients ($(grep -c . "$tmp/pg-waits-$c") session samples, pg_stat_activity every 50 ms)"
                show "$(grep . "$tmp/pg-waits-$c" | sort | uniq -c | sort -rn | head -15)"
            fi
        done
    else
        for i in 1 2 3; do [ -f "$tmp/pg$i/daemon.log" ] && show "$(tail -10 "$tmp/pg$i/daemon.log")"; done
        result 1 "three nodes on PostgreSQL started, warm-up"
        for c in $pg_clients_list; do result 1 "pg1-$c (no nodes)"; result 1 "pg3-$c (no nodes)"; done
    fi
    server_pids=()
    stop_nodes
    stop_pg
fi

if [ "$tiny" = 1 ]; then
    # Figures of a few rows mean nothing: the TAP lines above are the result.
    [ "$tap_failed" = 0 ]
    exit
fi

# ---- summary ----
# Three decimals: a target is judged on the figure printed, and 0.799 must not read as 0.80 "met".
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.3f", a / b }'; }
met() {  # met VALUE OP GOAL
    awk -v v="$1" -v op="$2" -v g="$3" 'BEGIN { if (v == "" || v == "n/a") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= g + 0) : (v + 0 <= g + 0); print ok ? "met" : "MISSED" }'
}
load=$(cut -d' ' -f1-3 /proc/loadavg)
say "summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -sr), load average now $load)"
printf '%-26s %10s %9s %9s %9s %7s %10s\n' "daemon loadgen (FULL)" "pairs/s" "p50 ms" "p99 ms" "max ms" "errors" "vs empty"
for c in $clients_list; do
    for s in empty pre; do
        l=$s-$c
        printf '%-26s %10s %9s %9s %9s %7s %9sx\n' "$s store, $c client(s)" "${rate[$l]:-n/a}" "${p50[$l]:-n/a}" \
            "${p99[$l]:-n/a}" "${pmax[$l]:-n/a}" "${errs[$l]:-n/a}" "$(ratio "${rate[$l]:-}" "${rate[empty-$c]:-}")"
    done
done
echo
printf '%-26s %10s pairs/s\n' "raw SQLCipher NORMAL" "${raw_normal:-n/a}"
printf '%-26s %10s pairs/s\n' "raw SQLCipher FULL" "${raw_full:-n/a}"
for s in $(grep -o 'mode=group-full-s[0-9]*' <<<"$baseline_out" | sed 's/.*-s//'); do
    printf '%-26s %10s pairs/s\n' "group store FULL, $s subm." "$(base "group-full-s$s")"
done
if [ -n "${ses_rate[*]-}" ]; then
    echo
    printf '%-26s %10s %12s %9s %9s %7s %11s %9s\n' "SES mock, pre-filled" "sends/s" "deliveries/s" "p50 ms" "p99 ms" \
        "errors" "mock/sent" "log ok"
    for label in $(printf '%s\n' "${!ses_rate[@]}" | sort); do
        printf '%-26s %10s %12s %9s %9s %7s %11s %9s\n' "$label clients" "${ses_rate[$label]}" "${ses_drate[$label]}" \
            "${ses_p50[$label]}" "${ses_p99[$label]}" "${ses_errs[$label]}" "${ses_deliv[$label]}" "${ses_log[$label]}"
    done
fi
if [ -n "${https_rate[*]-}" ] && [ "$https" = 1 ]; then
    echo
    printf '%-26s %10s %9s %9s %7s %14s %15s\n' "Varlink vs HTTPS (empty)" "pairs/s" "p50 ms" "p99 ms" "errors" \
        "daemon ms/pair" "loadgen ms/pair"
    for c in $https_clients_list; do
        for m in varlink https; do
            printf '%-26s %10s %9s %9s %7s %14s %15s\n' "$m, $c clients" "${https_rate[$m-$c]:-n/a}" \
                "${https_p50[$m-$c]:-n/a}" "${https_p99[$m-$c]:-n/a}" "${https_errs[$m-$c]:-n/a}" \
                "${https_dcpu[$m-$c]:-n/a}" "${https_lcpu[$m-$c]:-n/a}"
        done
    done
fi
if [ -n "${pgbench_tps[*]-}" ]; then
    echo
    # CPU per pair (ms): the nodes', the server's, and the whole machine's
    # (loadgen and all); pgbench's machine CPU per transaction beside it.
    printf '%-26s %10s %9s %9s %7s %12s %9s %9s %9s %11s\n' "PostgreSQL" "pairs/s" "p50 ms" "p99 ms" "errors" \
        "pgbench tps" "nodes ms" "server ms" "machine ms" "pgbench ms/tx"
    for c in $pg_clients_list; do
        for n in 1 3; do
            printf '%-26s %10s %9s %9s %7s %12s %9s %9s %9s %11s\n' "$n node(s), $c clients" "${https_rate[pg$n-$c]:-n/a}" \
                "${https_p50[pg$n-$c]:-n/a}" "${https_p99[pg$n-$c]:-n/a}" "${https_errs[pg$n-$c]:-n/a}" "${pgbench_tps[$c]:-n/a}" \
                "${https_dcpu[pg$n-$c]:-n/a}" "${https_scpu[pg$n-$c]:-n/a}" "${https_mcpu[pg$n-$c]:-n/a}" "${pgbench_mcpu[$c]:-n/a}"
        done
    done
fi
echo
printf '%-58s %10s %10s %7s\n' "target" "measured" "goal" ""
for c in $clients_list; do
    r=$(ratio "${rate[pre-$c]:-}" "${rate[empty-$c]:-}")
    printf '%-58s %9sx %10s %7s\n' "steady state: pre-filled / empty pairs/s, $c client(s)" "$r" ">= 0.8x" "$(met "$r" '>=' 0.8)"
done
best= best_label=
for c in $clients_list; do
    if awk -v a="${rate[empty-$c]:-0}" -v b="${best:-0}" 'BEGIN { exit !(a > b) }'; then best=${rate[empty-$c]} best_label=empty-$c; fi
done
r=$(ratio "$best" "$raw_normal")
printf '%-58s %9sx %10s %7s\n' "P2: daemon FULL pairs/s (best: ${best_label:-none}) / raw NORMAL" "$r" ">= 0.5x" "$(met "$r" '>=' 0.5)"
for c in $ses_clients_list; do
    v=${ses_drate[wait-$c]:-n/a}
    printf '%-58s %10s %10s %7s\n' "P3: SES deliveries/s, pre-filled store, $c clients" "$v" ">= 1000/s" "$(met "$v" '>=' 1000)"
done
r=$(ratio "${hf_verify_ms:-}" "${hf_true_ms:-}")
printf '%-58s %9sx %10s %7s\n' "P1: twofactor verify round trip / /bin/true" "$r" "<= 1.5x" "$(met "$r" '<=' 1.5)"
if [ -n "${hf_verify_ms:-}" ]; then
    printf '  (verify %.2f ms, /bin/true %.2f ms, means over %s runs)\n' "$hf_verify_ms" "$hf_true_ms" "$hf_runs"
fi
printf '%-58s %7s MiB %10s %7s\n' "P5: daemon RSS idle, pre-filled store" "${rss_idle[pre]:-n/a}" "<= 20 MiB" "$(met "${rss_idle[pre]:-}" '<=' 20)"
printf '%-58s %7s MiB %10s %7s\n' "P5: daemon peak RSS (VmHWM), pre-filled, up to ${clients_list##* } clients" "${rss_peak[pre]:-n/a}" "<= 64 MiB" "$(met "${rss_peak[pre]:-}" '<=' 64)"
printf '  (idle PSS %s MiB; empty store: idle RSS %s MiB, peak %s MiB; pre-filled store %s MiB on disk, %s)\n' \
    "${pss_idle[pre]:-n/a}" "${rss_idle[empty]:-n/a}" "${rss_peak[empty]:-n/a}" "${prefill_db_mib:-n/a}" "$([ -n "${PREFILL_FROM:-}" ] && echo "copied from $PREFILL_FROM" || echo "filled in ${prefill_seconds:-n/a} s")"
if [ "$privacy" = 1 ]; then
    printf '%-58s %10s %10s\n' "export of one subject among $privacy_rows requests (p99)" "${privacy_export:-n/a} ms" "<= 50 ms"
    printf '%-58s %10s %10s\n' "purge of $privacy_rows expired requests" "${privacy_purge:-n/a}" "<= 10 s, p99 <= 20 ms"
fi
if [ "$https" = 1 ]; then
    for c in $https_clients_list; do
        r=$(ratio "${https_rate[https-$c]:-}" "${https_rate[varlink-$c]:-}")
        printf '%-58s %9sx %10s %7s\n' "HTTPS / Varlink pairs/s, $c clients" "$r" ">= 0.8x" "$(met "$r" '>=' 0.8)"
    done
fi
if [ -n "${pgbench_tps[*]-}" ]; then
    for c in $pg_clients_list; do
        r=$(ratio "${https_rate[pg3-$c]:-}" "${pgbench_tps[$c]:-}")
        printf '%-58s %9sx %10s %7s\n' "PostgreSQL: 3-node pairs/s / pgbench tps, $c clients" "$r" ">= 0.5x" "$(met "$r" '>=' 0.5)"
    done
fi
[ "$tap_failed" = 0 ] || echo "run.sh: $tap_failed step(s) failed (see above)" >&2

#!/bin/bash
# twofactor benchmarks: daemon throughput (send+verify pairs), the storage
# baseline, a CLI round trip against /bin/true, and email deliveries per
# second through the SES driver to a loopback mock. See bench/README.md.
#
#   bench/run.sh                  # everything, a few minutes
#   PAIRS=2000 bench/run.sh       # fewer pairs per loadgen run
#
# Environment: BUILD_DIR (default: build), PAIRS (5000), MAX_SECONDS per
# loadgen run (60), CLIENTS ("1 16 64"), STORE_PAIRS (10000), HF_RUNS (200),
# HF_WARMUP (20), ALSO_NORMAL=1 to repeat the loadgen runs against a daemon
# with synchronous = "normal"; SES=0 skips the SES part, SES_SENDS (5000) sends
# per SES run, SES_CLIENTS ("16 64") clients for sends that wait for the
# provider, SES_NOWAIT_CLIENTS (16) for the wait=false run; PRIVACY=0 skips the
# privacy part (issue 5: subject export and retention purge on the real store),
# PRIVACY_ROWS (1000000) expired requests for it, PRIVACY_BATCH (1000).
# Only Unix sockets are used; every step runs under `timeout`; the daemon and
# the temporary directory are removed on exit. Targets are printed, never asserted.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}
pairs=${PAIRS:-5000}
max_seconds=${MAX_SECONDS:-60}
clients_list=${CLIENTS:-"1 16 64"}
store_pairs=${STORE_PAIRS:-10000}
hf_runs=${HF_RUNS:-200}
hf_warmup=${HF_WARMUP:-20}
also_normal=${ALSO_NORMAL:-0}
ses=${SES:-1}
ses_sends=${SES_SENDS:-5000}
ses_clients_list=${SES_CLIENTS:-"16 64"}
ses_nowait_clients=${SES_NOWAIT_CLIENTS:-16}
privacy=${PRIVACY:-1}
privacy_rows=${PRIVACY_ROWS:-1000000}
privacy_batch=${PRIVACY_BATCH:-1000}

say() { printf '\n== %s\n' "$*"; }

# ---- build if needed ----
if [ ! -f "$build/build.ninja" ]; then
    say "configuring $build"
    meson setup "$build" "$root" >/dev/null
fi
# Only what the benchmark runs (a broken test elsewhere does not stop it).
say "building (ninja -C $build daemon, cli, bench)"
timeout 900 ninja -C "$build" daemon/twofactord cli/twofactor bench/twofactor-loadgen \
    bench/twofactor-store-baseline bench/twofactor-mock-ses bench/twofactor-bench-privacy >/dev/null
daemon_bin=$build/daemon/twofactord
cli_bin=$build/cli/twofactor
loadgen=$build/bench/twofactor-loadgen
baseline=$build/bench/twofactor-store-baseline
mock_ses=$build/bench/twofactor-mock-ses
for b in "$daemon_bin" "$cli_bin" "$loadgen" "$baseline" "$mock_ses"; do
    [ -x "$b" ] || { echo "run.sh: $b was not built" >&2; exit 1; }
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
        wait "$daemon_pid" 2>/dev/null || true
    fi
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
cleanup() {
    stop_daemon
    stop_mock
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- a daemon like the embedded default, with room for 64+ connections ----
# start_daemon NAME SYNCHRONOUS [EXTRA_TOML]: writes $tmp/NAME/twofactord.toml
# (EXTRA_TOML appended) and starts it.
start_daemon() {
    local name=$1 sync=$2 extra=${3:-} dir=$tmp/$1
    mkdir -p -m 700 "$dir"
    socket=$dir/twofactord.sock
    state=$dir/state
    if [ ${#socket} -gt 107 ]; then echo "run.sh: socket path too long: $socket (set TMPDIR)" >&2; exit 1; fi
    cat >"$dir/twofactord.toml" <<EOF
# The embedded default's settings, written out so the connection limit can be raised.
[daemon]
socket = "$socket"
state_dir = "$state"
generate_keys = true
synchronous = "$sync"
log_level = "info"

[limits]
max_connections_per_uid = 256

[access.admin]
users = ["$(id -u)"]

# Throughput, not abuse: loadgen sends to user0@, user1@, ... again in every
# run against one daemon, faster than the per-app cap.
[apps.default.rate_limits]
resend_cooldown = 0
destination_sends = 1000000
app_sends = 1000000
app_window = 1

[apps.default]
display_name = "twofactor"
$extra
EOF
    "$daemon_bin" --config "$dir/twofactord.toml" >"$dir/daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 1 100); do
        [ -S "$socket" ] && break
        kill -0 "$daemon_pid" 2>/dev/null || { cat "$dir/daemon.log" >&2; echo "run.sh: the daemon exited" >&2; exit 1; }
        sleep 0.1
    done
    [ -S "$socket" ] || { cat "$dir/daemon.log" >&2; echo "run.sh: no socket after 10 s" >&2; exit 1; }
}

# field NAME LINE: the value of NAME=... in a RESULT line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

declare -A rate p50 p99 pmax errs
run_loadgen() {  # run_loadgen LABEL CLIENTS
    local label=$1 c=$2 out line
    out=$(timeout $((max_seconds + 60)) "$loadgen" --socket "$socket" --outbox "$state/outbox" \
        --clients "$c" --pairs "$pairs" --duration "$max_seconds") || true
    printf '%s\n' "$out" | grep -v '^RESULT'
    line=$(grep '^RESULT' <<<"$out" || true)
    [ -n "$line" ] || { echo "run.sh: loadgen gave no result" >&2; return; }
    rate[$label]=$(field pairs_per_s "$line")
    p50[$label]=$(field p50_ms "$line")
    p99[$label]=$(field p99_ms "$line")
    pmax[$label]=$(field max_ms "$line")
    errs[$label]=$(field errors "$line")
    last_id=$(field last_id "$line")
}

# ---- 1. loadgen against the daemon, synchronous FULL ----
say "daemon (synchronous = full): $daemon_bin"
start_daemon full full
say "warm-up: 200 pairs, 4 clients"
timeout 60 "$loadgen" --socket "$socket" --outbox "$state/outbox" --clients 4 --pairs 200 | grep -v '^RESULT' || true
last_id=
for c in $clients_list; do
    say "loadgen: $c client(s), $pairs pairs (at most ${max_seconds} s)"
    run_loadgen "full-$c" "$c"
done

# ---- 3. CLI round trip vs /bin/true (same daemon, a finished request) ----
hf_verify_ms= hf_true_ms=
if command -v hyperfine >/dev/null && [ -n "$last_id" ] && [ "$last_id" != "-" ]; then
    say "hyperfine: twofactor verify --id $last_id --code 000000 (finished request; exits 1) vs /bin/true"
    timeout 600 hyperfine -N -i --warmup "$hf_warmup" --runs "$hf_runs" --export-json "$tmp/hyperfine.json" \
        "$cli_bin --socket $socket verify --id $last_id --code 000000" /bin/true || true
    if [ -s "$tmp/hyperfine.json" ]; then
        if command -v jq >/dev/null; then
            hf_verify_ms=$(jq '.results[0].mean * 1000' "$tmp/hyperfine.json")
            hf_true_ms=$(jq '.results[1].mean * 1000' "$tmp/hyperfine.json")
        else
            hf_verify_ms=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"]*1000)' "$tmp/hyperfine.json")
            hf_true_ms=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][1]["mean"]*1000)' "$tmp/hyperfine.json")
        fi
    fi
else
    say "hyperfine or a finished request id missing: round trip skipped"
fi
stop_daemon

# ---- optional: the same loadgen runs with synchronous = normal ----
if [ "$also_normal" = 1 ]; then
    say "daemon (synchronous = normal)"
    start_daemon normal normal
    timeout 60 "$loadgen" --socket "$socket" --outbox "$state/outbox" --clients 4 --pairs 200 >/dev/null || true
    for c in $clients_list; do
        say "loadgen (normal): $c client(s), $pairs pairs"
        run_loadgen "normal-$c" "$c"
    done
    stop_daemon
fi

# ---- 2. the storage baseline ----
say "store baseline: $store_pairs INSERT+UPDATE pairs per measurement (at most 15 s each)"
mkdir -m 700 "$tmp/store"
baseline_out=$(timeout 300 "$baseline" --pairs "$store_pairs" --max-seconds 15 --dir "$tmp/store") || true
printf '%s\n' "$baseline_out" | grep -v '^RESULT'
base() { field pairs_per_s "$(grep "^RESULT mode=$1 " <<<"$baseline_out" || true)"; }
raw_normal=$(base raw-normal)
raw_full=$(base raw-full)

# ---- 4. email deliveries through the SES driver to a loopback mock ----
declare -A ses_rate ses_drate ses_p50 ses_p99 ses_errs ses_deliv ses_log
run_ses() {  # run_ses LABEL CLIENTS LOADGEN-FLAGS...
    local label=$1 c=$2 out line
    shift 2
    out=$(timeout $((max_seconds + 180)) "$loadgen" --socket "$socket" --mock-port "$mock_port" \
        --clients "$c" --pairs "$ses_sends" --duration "$max_seconds" --drain-timeout 120 "$@") || true
    printf '%s\n' "$out" | grep -v '^RESULT'
    line=$(grep '^RESULT' <<<"$out" || true)
    [ -n "$line" ] || { echo "run.sh: loadgen gave no result" >&2; return; }
    ses_rate[$label]=$(field sends_per_s "$line")
    ses_drate[$label]=$(field deliveries_per_s "$line")
    ses_p50[$label]=$(field p50_ms "$line")
    ses_p99[$label]=$(field p99_ms "$line")
    ses_errs[$label]=$(field errors "$line")
    ses_deliv[$label]=$(field delivered "$line")/$(field ok "$line")
    ses_log[$label]=$(field log_accepted "$line")
}
mock_out=
if [ "$ses" = 1 ]; then
    say "SES: twofactor-mock-ses on 127.0.0.1 (no signature checks), daemon with [delivery] email = \"ses\" (synchronous = full)"
    sesdir=$tmp/ses
    mkdir -m 700 "$sesdir"
    # Never real credentials: the mock checks no signature.
    (umask 077; printf 'AKIDBENCHEXAMPLE0000\n' >"$sesdir/aws-access-key-id"
     printf 'benchSecretAccessKeyNotReal0000000000000\n' >"$sesdir/aws-secret-access-key")
    timeout 1800 "$mock_ses" --port-file "$sesdir/mock.port" --max-seconds 1700 >"$sesdir/mock.log" 2>&1 &
    mock_pid=$!
    for _ in $(seq 1 50); do [ -s "$sesdir/mock.port" ] && break; sleep 0.1; done
    mock_port=$(cat "$sesdir/mock.port" 2>/dev/null || true)
    [ -n "$mock_port" ] || { cat "$sesdir/mock.log" >&2; echo "run.sh: the mock did not start" >&2; exit 1; }
    start_daemon ses full "channels = [\"email\"]

[delivery]
email = \"ses\"
whatsapp = \"outbox\"

[ses]
region = \"eu-west-1\"
endpoint = \"http://127.0.0.1:$mock_port\"
from = \"Bench <bench@example.com>\"
access_key_id_file = \"$sesdir/aws-access-key-id\"
secret_access_key_file = \"$sesdir/aws-secret-access-key\"
timeout = 10"
    say "SES warm-up: 200 sends, 4 clients"
    timeout 60 "$loadgen" --socket "$socket" --send-only --clients 4 --pairs 200 | grep -v '^RESULT' || true
    for c in $ses_clients_list; do
        say "SES: $c client(s), $ses_sends sends, each waiting for the provider's answer"
        run_ses "wait-$c" "$c" --send-only
    done
    say "SES: $ses_nowait_clients client(s), $ses_sends sends with wait = false (--no-wait)"
    run_ses "no-wait-$ses_nowait_clients" "$ses_nowait_clients" --no-wait
    stop_daemon
    stop_mock
    mock_out=$(grep -v '^RESULT' "$sesdir/mock.log" || true)
    printf '%s\n' "$mock_out"
fi

# ---- privacy: subject export and retention purge ----
privacy_export= privacy_purge=
if [ "$privacy" = 1 ]; then
    say "privacy: $privacy_rows expired requests with a delivery attempt each; export of one subject; purge (batch $privacy_batch) with verifies going on"
    privacy_out=$(timeout 3600 "$build/bench/twofactor-bench-privacy" --rows "$privacy_rows" --batch "$privacy_batch" --dir "$tmp")
    printf '%s\n' "$privacy_out" | grep -v '^RESULT'
    privacy_export=$(printf '%s\n' "$privacy_out" | sed -n 's/^RESULT bench=export .*p99_ms=\([0-9.]*\).*/\1/p')
    privacy_purge=$(printf '%s\n' "$privacy_out" | sed -n 's/^RESULT bench=purge .*seconds=\([0-9.]*\) .*verify_p99_ms=\([0-9.]*\).*/\1 s, verify p99 \2 ms/p')
fi

# ---- summary ----
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
say "summary ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -sr))"
printf '%-28s %10s %9s %9s %9s %7s %12s\n' "daemon loadgen" "pairs/s" "p50 ms" "p99 ms" "max ms" "errors" "vs raw NORMAL"
best= best_label=
for label in $(printf '%s\n' "${!rate[@]}" | sort -t- -k1,1 -k2,2n); do
    printf '%-28s %10s %9s %9s %9s %7s %11sx\n' "$label clients" "${rate[$label]}" "${p50[$label]}" "${p99[$label]}" \
        "${pmax[$label]}" "${errs[$label]}" "$(ratio "${rate[$label]}" "$raw_normal")"
    if [[ $label == full-* ]] && awk -v a="${rate[$label]}" -v b="${best:-0}" 'BEGIN { exit !(a > b) }'; then
        best=${rate[$label]} best_label=$label
    fi
done
if [ "${#ses_rate[@]}" -gt 0 ]; then
    echo
    printf '%-28s %10s %12s %9s %9s %7s %11s %9s\n' "SES to loopback mock" "sends/s" "deliveries/s" "p50 ms" "p99 ms" \
        "errors" "mock/sent" "log ok"
    for label in $(printf '%s\n' "${!ses_rate[@]}" | sort); do
        printf '%-28s %10s %12s %9s %9s %7s %11s %9s\n' "$label clients" "${ses_rate[$label]}" "${ses_drate[$label]}" \
            "${ses_p50[$label]}" "${ses_p99[$label]}" "${ses_errs[$label]}" "${ses_deliv[$label]}" "${ses_log[$label]}"
    done
fi
echo
printf '%-28s %10s pairs/s\n' "raw SQLCipher NORMAL" "${raw_normal:-n/a}"
printf '%-28s %10s pairs/s\n' "raw SQLCipher FULL" "${raw_full:-n/a}"
for s in $(grep -o 'mode=group-full-s[0-9]*' <<<"$baseline_out" | sed 's/.*-s//'); do
    printf '%-28s %10s pairs/s\n' "group store FULL, $s subm." "$(base "group-full-s$s")"
done
echo
printf '%-52s %10s %10s\n' "target" "measured" "goal"
printf '%-52s %9sx %10s\n' "daemon FULL pairs/s (best: ${best_label:-none}) / raw NORMAL" "$(ratio "$best" "$raw_normal")" ">= 0.5x"
printf '%-52s %9sx %10s\n' "twofactor verify round trip / /bin/true" "$(ratio "$hf_verify_ms" "$hf_true_ms")" "<= 1.5x"
ses_best= ses_best_label=
for label in "${!ses_drate[@]}"; do
    if awk -v a="${ses_drate[$label]}" -v b="${ses_best:-0}" 'BEGIN { exit !(a > b) }'; then
        ses_best=${ses_drate[$label]} ses_best_label=$label
    fi
done
printf '%-52s %10s %10s\n' "deliveries/s to loopback SES mock (best: ${ses_best_label:-none})" "${ses_best:-n/a}" ">= 1000/s"
if [ -n "$hf_verify_ms" ]; then
    printf '  (verify %.2f ms, /bin/true %.2f ms, means over %s runs)\n' "$hf_verify_ms" "$hf_true_ms" "$hf_runs"
fi
if [ "$privacy" = 1 ]; then
    printf '%-52s %10s %10s\n' "export of one subject among $privacy_rows requests (p99)" "${privacy_export:-n/a} ms" "<= 50 ms"
    printf '%-52s %10s %10s\n' "purge of $privacy_rows expired requests" "${privacy_purge:-n/a}" "<= 10 s, p99 <= 20 ms"
fi

#!/usr/bin/env bash
# Quick start: installs what is missing, builds, starts twofactord on its
# embedded default (an encrypted store with keys generated on first start,
# and the outbox channel), then sends a code and verifies it.
set -euo pipefail
cd "$(dirname "$0")"
packaging/install-deps.sh
[ -f build/build.ninja ] || meson setup build -Ddebug=false >/dev/null  # as test.sh: -O2, no debug info
ninja -C build >/dev/null

demo="$PWD/build/demo"
# A fresh state each run: new keys, and no rate limit from the previous run
# (sends to one address are spaced 30 s apart by default).
rm -rf "$demo"
mkdir -p "$demo"
export TWOFACTOR_SOCKET="$demo/twofactord.sock"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "twofactord --state-dir $demo/state --socket $TWOFACTOR_SOCKET   (no config file: the embedded default)"
build/daemon/twofactord --state-dir "$demo/state" --socket "$TWOFACTOR_SOCKET" 2>"$demo/twofactord.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$TWOFACTOR_SOCKET" ] && break; sleep 0.05; done
sed 's/^/    /' "$demo/twofactord.log"

# Email proves control of an address; it is no sign-in factor (NIST SP 800-63B),
# so the purpose is "verify", never "login".
say "twofactor send --app default --to alice@example.org --purpose verify"
id=$(build/cli/twofactor send --app default --to alice@example.org --purpose verify)
echo "$id"

msg=$(ls -t "$demo"/state/outbox/new/*."$id".* | head -n 1)
say "the message the outbox channel wrote: $msg"
sed 's/^/    /' "$msg"

code=$(sed -n '/^$/,$p' "$msg" | grep -oE '\b[0-9]{6}\b' | head -n 1)
say "twofactor verify --id $id --code -   (the code on stdin, never in ps)"
echo "$code" | build/cli/twofactor verify --id "$id" --code - && verdict=$? || verdict=$?
echo "(exit $verdict)"

say "twofactor verify --id $id --code -   (again: a code is accepted once)"
echo "$code" | build/cli/twofactor verify --id "$id" --code - && again=$? || again=$?
echo "(exit $again)"

say "twofactor status $id"
build/cli/twofactor status "$id"

say "the store is encrypted: the first bytes of $demo/state/twofactor.db"
head -c 32 "$demo/state/twofactor.db" | od -An -tx1 | sed 's/^/   /'
[ "$verdict" -eq 0 ] && [ "$again" -eq 1 ]

#!/usr/bin/env bash
# Builds the Debian package, lints it, installs it on this machine, checks
# what it installed (files, users, groups, units, the example
# configuration), removes and purges it, and checks that nothing it made is
# left but the users and groups, which Debian keeps on purge so that files
# they own elsewhere never change hands.
#   packaging/test-deb.sh [OUTDIR]
# TWOFACTOR_DEB=FILE tests that package instead of building one.
# Needs root, and no twofactor package installed already. DEB_BUILD_OPTIONS
# passes through (the suite sets nocheck: it has just run the tests itself).
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$src/build-deb}"
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
step() { echo "test-deb: $*" >&2; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs the package)"
if dpkg-query -W -f='${Status}' twofactor 2>/dev/null | grep -q "ok installed"; then
  fail "a twofactor package is installed already; not touching it"
fi

deb="${TWOFACTOR_DEB:-}"
if [ -z "$deb" ]; then
  step "building"
  start=$(date +%s)
  mkdir -p "$out"
  deb="$("$src/packaging/build-deb.sh" "$out" 2>"$out.build.log" | tail -1)" || {
    tail -40 "$out.build.log" >&2
    fail "dpkg-buildpackage failed (log: $out.build.log)"
  }
  step "built $deb in $(( $(date +%s) - start ))s"
fi

step "lintian"
lintian --fail-on error,warning --info "$deb" >&2 || fail "lintian reported errors or warnings"

step "installing"
dpkg -i "$deb" >&2 || fail "dpkg -i failed"
trap 'dpkg -P twofactor >/dev/null 2>&1 || true' EXIT
mapfile -t installed < <(dpkg -L twofactor)

for f in /usr/sbin/twofactord /usr/bin/twofactor \
         /lib/systemd/system/twofactord.service /lib/systemd/system/twofactord.socket \
         /usr/lib/sysusers.d/twofactor.conf \
         /usr/share/man/man1/twofactor.1.gz /usr/share/man/man8/twofactord.8.gz \
         /usr/share/man/man5/twofactord.toml.5.gz \
         /usr/share/twofactor/varlink/io.twofactor.Otp.varlink \
         "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/twofactor/twofactor-phone.so" \
         /usr/share/doc/twofactor/twofactord.toml.example \
         /usr/share/bash-completion/completions/twofactor /usr/share/zsh/vendor-completions/_twofactor; do
  [ -e "$f" ] || fail "not installed: $f"
done
getent passwd twofactor >/dev/null || fail "no twofactor user"
for g in twofactor twofactor-operators twofactor-dpo twofactor-admins; do
  getent group "$g" >/dev/null || fail "no group $g"
done
[ "$(getent passwd twofactor | cut -d: -f7)" != "/bin/sh" ] || fail "the twofactor user has a login shell"
[ ! -e /etc/twofactor/twofactord.toml ] || fail "a configuration was installed: the service would start unasked"
/usr/sbin/twofactord --check-config --config /usr/share/doc/twofactor/twofactord.toml.example >&2 ||
  fail "twofactord --check-config rejects the example configuration"
/usr/bin/twofactor --version >&2 || fail "the installed CLI does not run"
score="$(systemd-analyze security --offline=yes /lib/systemd/system/twofactord.service | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
step "systemd-analyze security --offline=yes twofactord.service: $score"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' || fail "exposure $score above 2.0"
systemd-analyze verify --man=no /lib/systemd/system/twofactord.service /lib/systemd/system/twofactord.socket >&2 ||
  fail "systemd-analyze verify"
bash -c 'source /usr/share/bash-completion/completions/twofactor; complete -p twofactor' >&2 ||
  fail "the bash completion does not load"

step "removing"
dpkg -r twofactor >&2 || fail "dpkg -r failed"
[ ! -e /usr/sbin/twofactord ] || fail "twofactord left after remove"
step "purging"
dpkg -P twofactor >&2 || fail "dpkg -P failed"
trap - EXIT
dpkg-query -W -f='${Status}' twofactor 2>/dev/null | grep -q "ok installed" && fail "still installed"
for f in "${installed[@]}"; do
  # Directories shared with other packages stay; files of ours must not.
  [ -d "$f" ] || [ ! -e "$f" ] || fail "left after purge: $f"
done
for f in /var/lib/twofactor /etc/twofactor /run/twofactor /usr/share/twofactor /usr/share/doc/twofactor; do
  [ ! -e "$f" ] || fail "left after purge: $f"
done
left="$(find /etc/systemd/system -name 'twofactor*' 2>/dev/null; find /var/lib/systemd/deb-systemd-helper-enabled -name 'twofactor*' 2>/dev/null)"
[ -z "$left" ] || fail "unit links left after purge: $left"
step "ok"

#!/usr/bin/env bash
# Installs the Debian 12 packages twofactor builds, tests and benchmarks with,
# when any is missing. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  meson ninja-build pkg-config g++ python3
  libcli11-dev libsqlcipher-dev libcurl4-openssl-dev libssl-dev libtomlplusplus-dev catch2
  nlohmann-json3-dev libphonenumber-dev libboost1.74-dev libsystemd-dev scdoc
  python3-aiosmtpd python3-botocore sqlcipher swaks hyperfine util-linux openssl
  libpam0g-dev pamtester libmaxminddb-dev mmdb-bin
  python3-prometheus-client bash-completion zsh systemd
  debhelper dpkg-dev fakeroot lintian
)
# The PostgreSQL backend (libpq) and the throwaway server its tests start.
packages+=(libpq-dev postgresql-15)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "==> installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

#!/usr/bin/env bash
# Builds the twofactor Debian package from this checkout:
#   packaging/build-deb.sh [OUTDIR]
# The files git tracks (with their changes in the work tree) are copied into
# a fresh source tree, packaging/debian becomes its debian/, and
# dpkg-buildpackage builds the binary package there; the .deb lands in
# OUTDIR (default: build-deb/ in the checkout). DEB_BUILD_OPTIONS passes
# through: DEB_BUILD_OPTIONS=nocheck skips building and running the test suite.
# Needs: packaging/install-deps.sh's packages plus debhelper, dpkg-dev and fakeroot.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$src/build-deb}" && cd "${1:-$src/build-deb}" && pwd)"
version="$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)"

# One fixed tree per output directory, so ccache finds the last build's
# objects (the compiler sees the same paths) and a rebuild costs little.
tree="$out/twofactor-$version"
rm -rf "$tree"
mkdir -p "$tree"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  # Files deleted in the work tree but still tracked are left out.
  (cd "$src" && git ls-files -z --cached --others --exclude-standard | grep -zv '^build' |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$tree"
else
  (cd "$src" && tar --exclude='./build*' --exclude=./.git -cf - .) | tar -xf - -C "$tree"
fi
rm -rf "$tree/debian"
cp -r "$tree/packaging/debian" "$tree/debian"
# dh_installsysusers takes the users and groups from debian/PACKAGE.sysusers.
cp "$tree/packaging/twofactor.sysusers" "$tree/debian/twofactor.sysusers"

(cd "$tree" && dpkg-buildpackage --build=binary --no-sign -j"${JOBS:-2}") >&2
rm -rf "$tree"
ls "$out"/twofactor_"$version"_*.deb

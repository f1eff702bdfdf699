"""The Debian package, end to end: packaging/test-deb.sh builds it (without
running the suite again: DEB_BUILD_OPTIONS=nocheck, as this suite is what
just ran; and without debug information, so without the -dbgsym package),
lints it, installs it on this machine, checks files, users, groups, units
and the example configuration, removes and purges it, and checks that
nothing is left. Only as root, with dpkg-buildpackage and no twofactor
package installed already; TWOFACTOR_TEST_PACKAGE=no skips it (a cold
package build compiles the daemon once more: minutes on two cores)."""
import os
import shutil
import subprocess
import unittest

import harness

SOURCE = os.environ.get("TWOFACTOR_SOURCE_DIR", "")
BUILD_ROOT = os.environ.get("TWOFACTOR_BUILD_ROOT", "")


def installed():
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "twofactor"], capture_output=True, text=True)
    return "ok installed" in r.stdout


@unittest.skipUnless(os.getuid() == 0 and shutil.which("dpkg-buildpackage") and shutil.which("lintian")
                     and SOURCE and BUILD_ROOT, "needs root, dpkg-buildpackage and lintian")
@unittest.skipIf(installed(), "a twofactor package is installed already")
@unittest.skipIf(os.environ.get("TWOFACTOR_TEST_PACKAGE") == "no", "TWOFACTOR_TEST_PACKAGE=no")
class Package(unittest.TestCase):
    def test_build_lint_install_purge(self):
        # Built as Debian builds it (hardening=+all, -O2), but without debug
        # information and so without the -dbgsym package, which this test does
        # not look at: a third less compile time.
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck noautodbgsym", DEB_CFLAGS_STRIP="-g",
                   DEB_CXXFLAGS_STRIP="-g")
        # One fixed output directory in the build tree: ccache finds the
        # objects of the last package build there.
        out = os.path.join(BUILD_ROOT, "deb")
        r = subprocess.run([os.path.join(SOURCE, "packaging", "test-deb.sh"), out], capture_output=True, text=True,
                           env=env, timeout=1500)
        for line in r.stderr.splitlines():
            if line.startswith("test-deb:"):
                print("# " + line, flush=True)
        self.assertEqual(r.returncode, 0, r.stderr[-6000:])
        self.assertFalse(installed())


if __name__ == "__main__":
    harness.main()

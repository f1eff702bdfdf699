"""twofactord --check-config, and a start with a bad file, report every error
in the file, sorted by line, and exit 2."""
import os
import subprocess
import tempfile
import unittest

import harness

BAD = """[daemon]
log_level = "loud"
state_dir = "relative"

[apps.shop]
ttl = 5
max_attempts = 0
"""


class CheckConfig(unittest.TestCase):
    def run_daemon(self, text, *args):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        try:
            return subprocess.run([harness.TWOFACTORD, "--config", f.name, *args], capture_output=True, text=True,
                                  timeout=60), f.name
        finally:
            os.unlink(f.name)

    def test_every_error_by_line(self):
        for args in (["--check-config"], []):
            r, name = self.run_daemon(BAD, *args)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(r.stdout, "")
            self.assertEqual(r.stderr.splitlines(), [
                "twofactord: %s:2:13: daemon.log_level: must be one of debug, info, warning, error, not \"loud\"" % name,
                "twofactord: %s:3:13: daemon.state_dir: must be an absolute path" % name,
                "twofactord: %s:6:7: apps.shop.ttl: must be between 30 and 86400 seconds" % name,
                "twofactord: %s:7:16: apps.shop.max_attempts: must be between 1 and 100" % name,
            ])

    def test_syntax_error_is_the_only_one(self):
        r, name = self.run_daemon('[daemon]\nlog_level = "loud"\n[apps.shop\n', "--check-config")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertIn(name + ":3:", r.stderr)

    def test_valid_file_is_ok(self):
        r, name = self.run_daemon('[daemon]\nstate_dir = "/tmp/x"\n[apps.shop]\n', "--check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(name + ": ok", r.stdout)


if __name__ == "__main__":
    harness.main()

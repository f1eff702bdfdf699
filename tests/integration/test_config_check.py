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


class Logging(unittest.TestCase):
    def test_log_lines_and_times_are_rfc3339(self):
        import calendar
        import re
        clock = calendar.timegm((2026, 12, 1, 0, 0, 0))
        d = harness.Daemon(clock=clock)
        d.start()
        try:
            d.send("alice@example.org", "default", "--purpose", "verify")
        finally:
            d.stop()
        lines = d.read_log().splitlines()
        d.cleanup()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ twofactord: (debug|info|warning|error): ")
        # The default schedule "17 3 * * *" (UTC), from the daemon's clock.
        self.assertTrue(any(line.endswith("next at 2026-12-01T03:17:00Z") for line in lines), lines)
        # No bare Unix seconds (an outbox file name starts with them: that is a name).
        self.assertFalse(any(re.search(r"(?<![\w.])1[0-9]{9}(?![\w.])", line) for line in lines), lines)


if __name__ == "__main__":
    harness.main()

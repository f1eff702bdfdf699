"""Retention through the real twofactord (issue 5): `twofactor retention run
[--dry-run]` and `retention status` (io.twofactor.Privacy, dpo and admin), the
cron schedule run by the daemon on its own clock, and --check-config refusing
an invalid schedule."""
import json
import os
import subprocess
import tempfile
import time
import unittest

import harness

T0 = 1_800_000_000  # 2027-01-15 08:00:00 UTC
DAY = 86400

CONFIG = """
[daemon]
state_dir = "{{root}}/state"
generate_keys = true

[access.admin]
users = ["{{uid}}"]

[retention]
schedule = "{schedule}"
batch_size = 2

[apps.default]
"""


def run_json(d, *args):
    r = d.cli("--json", "retention", *args)
    if r.returncode != 0:
        raise AssertionError("retention %s failed (%d): %s" % (args, r.returncode, r.stderr))
    return json.loads(r.stdout)


class ManualRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # June 1st only: moving the clock 91 days from January never reaches it.
        cls.d = harness.Daemon(config=CONFIG.format(schedule="0 0 1 6 *"), clock=T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_run_purges_old_deliveries_and_ips_dry_run_first(self):
        d = self.d
        d.set_clock(T0)
        rid = d.send("old@example.org", "default", "--ip", "192.0.2.55", "--device", "phone-1")
        # The attempt is logged once the outbox took the message; a store with
        # several connections (PostgreSQL) may answer this read first.
        deadline = time.time() + 10
        while not d.cli("--json", "deliveries", rid).stdout.strip() and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(json.loads(d.cli("--json", "deliveries", rid).stdout.splitlines()[0]))
        status = run_json(d, "status")
        self.assertEqual(status["schedule"], "0 0 1 6 *")
        self.assertNotIn("lastStarted", status)

        d.set_clock(T0 + 91 * DAY)
        dry = run_json(d, "run", "--dry-run")
        self.assertTrue(dry["dryRun"])
        self.assertGreaterEqual(dry["counts"]["deliveries"], 1)
        self.assertEqual(dry["counts"]["clientData"], 1)
        self.assertGreaterEqual(dry["counts"]["requestLog"], 1)
        # Nothing deleted, nothing recorded.
        self.assertEqual(len(d.cli("--json", "deliveries", rid).stdout.splitlines()), 1)
        self.assertNotIn("lastStarted", run_json(d, "status"))

        real = run_json(d, "run")
        self.assertFalse(real["dryRun"])
        self.assertEqual(real["counts"]["deliveries"], dry["counts"]["deliveries"])
        self.assertEqual(real["counts"]["clientData"], 1)
        self.assertEqual(d.cli("--json", "deliveries", rid).stdout.strip(), "")
        again = run_json(d, "run", "--dry-run")
        self.assertEqual(again["counts"]["clientData"], 0)
        self.assertEqual(again["counts"]["deliveries"], 0)

        status = run_json(d, "status")
        self.assertEqual(status["lastTrigger"], "manual")
        self.assertEqual(status["lastStarted"], T0 + 91 * DAY)
        self.assertEqual(status["lastCounts"]["clientData"], 1)
        # Human output: one line per category; no progress on a pipe.
        r = d.cli("retention", "status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("clientData", r.stdout)
        r = d.cli("retention", "run", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("dry run: nothing was deleted", r.stdout)
        self.assertEqual(r.stderr, "")
        self.assertIn("retention purge (manual)", d.read_log())

    def test_wrong_role_is_refused(self):
        for args in (["run"], ["run", "--dry-run"], ["status"]):
            r = self.d.cli("retention", *args, user=65534)
            self.assertEqual(r.returncode, 4, r.stderr)
            self.assertIn("permission denied", r.stderr)


class ScheduledRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG.format(schedule="30 4 * * *"), clock=T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_a_run_happens_when_the_clock_passes_the_schedule(self):
        d = self.d
        rid = d.send("sched@example.org", "default", "--ip", "198.51.100.9")
        status = run_json(d, "status")
        self.assertEqual(status["nextRun"], T0 + 20 * 3600 + 1800)  # 04:30 the next day
        self.assertNotIn("lastStarted", status)

        later = T0 + 91 * DAY + 3600
        d.set_clock(later)
        for _ in range(100):
            status = run_json(d, "status")
            if "lastStarted" in status:
                break
            time.sleep(0.1)
        self.assertEqual(status.get("lastTrigger"), "schedule", status)
        self.assertEqual(status["lastStarted"], later)
        self.assertGreaterEqual(status["lastCounts"]["deliveries"], 1)
        self.assertEqual(status["lastCounts"]["clientData"], 1)
        # The next run is the following 04:30 after the clock's new time.
        self.assertGreater(status["nextRun"], later)
        self.assertLessEqual(status["nextRun"], later + DAY)
        self.assertEqual(d.cli("--json", "deliveries", rid).stdout.strip(), "")
        self.assertIn("retention purge (schedule)", d.read_log())


class CheckConfig(unittest.TestCase):
    def check(self, schedule):
        text = '[daemon]\nstate_dir = "/tmp/x"\n[retention]\nschedule = "%s"\n[apps.shop]\n' % schedule
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        try:
            return subprocess.run([harness.TWOFACTORD, "--check-config", "--config", f.name],
                                  capture_output=True, text=True), f.name
        finally:
            os.unlink(f.name)

    def test_invalid_cron_is_rejected(self):
        for bad in ("61 * * * *", "* * *", "0 0 30 2 *", "@reboot"):
            r, name = self.check(bad)
            self.assertEqual(r.returncode, 2, bad + ": " + r.stderr)
            self.assertIn(name + ":4:", r.stderr)
            self.assertIn("retention.schedule", r.stderr)

    def test_valid_cron_is_accepted(self):
        r, _ = self.check("*/10 2-4 * * mon-fri")
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    harness.main()

"""Rate limits and the per-subject lockout through the real twofactord, with
the injected clock: cooldown, caps per destination, IP, prefix and app, the
lockout across resends, new sends and restarts, and the RateLimited error."""
import json
import unittest

import harness

T0 = 1_800_000_000

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[apps.default]

[apps.small]
[apps.small.rate_limits]
ip_sends = 3
prefix_sends = 5

[apps.tiny]
[apps.tiny.rate_limits]
app_sends = 3

[apps.lock]
max_attempts = 20
max_sends = 20
"""


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG, clock=T0).start()
        cls.base = T0

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def setUp(self):
        # Each test in a time of its own, far from the others' windows.
        type(self).base += 100_000
        self.t = self.base
        self.d.set_clock(self.t)

    def at(self, offset):
        self.d.set_clock(self.base + offset)

    def refused(self, r, scope, retry=None):
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("rate limited (" + scope + ":", r.stderr)
        if retry is not None:
            self.assertIn("retry in %d s" % retry, r.stderr)

    def send(self, to, app="default", *extra):
        return self.d.cli("send", "--app", app, "--to", to, *extra)

    def wrong(self, rid, attempt=None):
        code = self.d.code_for(rid, attempt)
        return "%06d" % ((int(code) + 1) % 1000000)

    def test_cooldown_refuses_and_sends_nothing(self):
        self.assertEqual(self.send("cool@example.org").returncode, 0)
        before = len(self.d.outbox_files())
        self.at(10)
        r = self.send("cool@example.org")
        self.refused(r, "destination-cooldown", 20)
        self.assertIn("resend cooldown", r.stderr)
        self.assertEqual(len(self.d.outbox_files()), before)
        self.assertEqual(self.send("other-cool@example.org").returncode, 0)
        self.at(30)
        self.assertEqual(self.send("cool@example.org").returncode, 0)

    def test_resend_cooldown(self):
        rid = self.d.send("recool@example.org")
        r = self.d.cli("resend", rid)
        self.refused(r, "destination-cooldown", 30)
        st = json.loads(self.d.cli("--json", "status", rid).stdout)
        self.assertEqual(st["sends"], 1)  # nothing stored
        self.at(30)
        self.assertEqual(self.d.cli("resend", rid).returncode, 0)

    def test_cap_per_destination_counts_sends_and_resends(self):
        rid = self.d.send("cap@example.org")
        for i in range(1, 3):
            self.at(30 * i)
            self.assertEqual(self.d.cli("resend", rid).returncode, 0)
        for i in range(3, 5):
            self.at(30 * i)
            self.assertEqual(self.send("cap@example.org").returncode, 0)
        self.at(150)
        self.refused(self.send("cap@example.org"), "destination", 900 - 150)
        self.refused(self.d.cli("resend", rid), "destination", 900 - 150)
        self.at(900)
        self.assertEqual(self.send("cap@example.org").returncode, 0)

    def test_ip_and_prefix_limits(self):
        for i in range(3):
            self.assertEqual(self.send("ip%d@example.org" % i, "small", "--ip", "203.0.113.5").returncode, 0)
        self.refused(self.send("ip3@example.org", "small", "--ip", "203.0.113.5"), "ip", 900)
        self.assertEqual(self.send("ip4@example.org", "small", "--ip", "203.0.113.6").returncode, 0)
        self.assertEqual(self.send("ip5@example.org", "small", "--ip", "203.0.113.7").returncode, 0)
        self.refused(self.send("ip6@example.org", "small", "--ip", "203.0.113.8"), "prefix")
        # Another /24, and a send without an IP, are not affected.
        self.assertEqual(self.send("ip7@example.org", "small", "--ip", "203.0.114.8").returncode, 0)
        self.assertEqual(self.send("ip8@example.org", "small").returncode, 0)
        # IPv6: one /64 shares a counter.
        for i in range(3):
            self.assertEqual(self.send("v6-%d@example.org" % i, "small", "--ip", "2001:db8:7:1::%d" % (i + 1)).returncode, 0)
        self.assertEqual(self.send("v6-3@example.org", "small", "--ip", "2001:db8:7:1:ffff::1").returncode, 0)
        self.assertEqual(self.send("v6-4@example.org", "small", "--ip", "2001:db8:7:1::99").returncode, 0)
        self.refused(self.send("v6-5@example.org", "small", "--ip", "2001:db8:7:1::100"), "prefix")
        self.assertEqual(self.send("v6-6@example.org", "small", "--ip", "2001:db8:7:2::1").returncode, 0)
        log = self.d.read_log()
        self.assertIn("rate limit ip: send for app 'small' refused", log)
        for secret in ("203.0.113", "2001:db8:7", "ip3@example.org", "v6-5@example.org"):
            self.assertNotIn(secret, log)

    def test_app_limit(self):
        for i in range(3):
            self.assertEqual(self.send("tiny%d@example.org" % i, "tiny").returncode, 0)
        self.at(20)
        self.refused(self.send("tiny3@example.org", "tiny"), "app", 40)
        self.at(60)
        self.assertEqual(self.send("tiny3@example.org", "tiny").returncode, 0)

    def test_rate_limited_over_raw_varlink(self):
        self.assertEqual(self.send("raw@example.org").returncode, 0)
        reply = self.d.call("io.twofactor.Otp.Send", {"app": "default", "destination": "raw@example.org"})
        self.assertEqual(reply["error"], "io.twofactor.Otp.RateLimited")
        self.assertEqual(reply["parameters"], {"scope": "destination-cooldown", "retryAfter": 30})

    def test_subject_lockout_survives_resend_new_send_and_restart(self):
        to = "locked@example.org"
        r1 = self.d.send(to, "lock")
        for _ in range(3):
            self.assertEqual(self.d.cli("verify", "--id", r1, "--code", self.wrong(r1, 1)).returncode, 1)
        self.at(30)
        self.assertEqual(self.d.cli("resend", r1).returncode, 0)  # a new code does not reset the count
        for _ in range(3):
            self.assertEqual(self.d.cli("verify", "--id", r1, "--code", self.wrong(r1, 2)).returncode, 1)
        self.at(60)
        r2 = self.d.send(to, "lock")  # nor does a new request
        for _ in range(3):
            self.assertEqual(self.d.cli("verify", "--id", r2, "--code", self.wrong(r2, 1)).returncode, 1)
        self.at(90)
        self.assertEqual(self.d.cli("resend", r2).returncode, 0)
        code = self.d.code_for(r2, 2)
        self.assertEqual(self.d.cli("verify", "--id", r2, "--code", self.wrong(r2, 2)).returncode, 1)  # the 10th
        r = self.d.cli("verify", "--id", r2, "--code", code)
        self.refused(r, "subject-lockout", 60)
        self.assertIn("failed verifications", r.stderr)
        r = self.d.cli("verify", "--app", "lock", "--to", to, "--code", code)
        self.refused(r, "subject-lockout", 60)
        self.d.stop()
        self.d.start()
        self.at(149)
        self.refused(self.d.cli("verify", "--id", r2, "--code", code), "subject-lockout", 1)
        st = json.loads(self.d.cli("--json", "status", r2).stdout)
        self.assertEqual((st["status"], st["attempts"]), ("pending", 4))  # refusals counted nothing
        self.at(150)
        # After the delay one more wrong code locks again, for twice as long.
        self.assertEqual(self.d.cli("verify", "--id", r2, "--code", self.wrong(r2, 2)).returncode, 1)
        self.refused(self.d.cli("verify", "--id", r2, "--code", code), "subject-lockout", 120)
        self.at(270)
        r = self.d.cli("verify", "--id", r2, "--code", code)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
        self.assertIn("rate limit subject-lockout: verify of " + r2, self.d.read_log())
        self.assertNotIn(to, self.d.read_log())

    def test_success_resets_the_subject_count(self):
        to = "reset@example.org"
        r1 = self.d.send(to, "lock")
        for _ in range(9):
            self.assertEqual(self.d.cli("verify", "--id", r1, "--code", self.wrong(r1)).returncode, 1)
        self.assertEqual(self.d.cli("verify", "--id", r1, "--code", self.d.code_for(r1)).returncode, 0)
        self.at(30)
        r2 = self.d.send(to, "lock")
        for _ in range(9):
            self.assertEqual(self.d.cli("verify", "--id", r2, "--code", self.wrong(r2)).returncode, 1)
        r = self.d.cli("verify", "--id", r2, "--code", self.d.code_for(r2))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)

    def test_restart_keeps_the_send_counters(self):
        self.assertEqual(self.send("restart@example.org").returncode, 0)
        for i in range(3):
            self.assertEqual(self.send("restart-ip%d@example.org" % i, "small", "--ip", "198.51.100.1").returncode, 0)
        self.d.stop()
        self.d.start()
        self.at(5)
        self.refused(self.send("restart@example.org"), "destination-cooldown", 25)
        self.refused(self.send("restart-ip3@example.org", "small", "--ip", "198.51.100.1"), "ip", 895)


class Config(unittest.TestCase):
    def test_more_than_100_failures_is_refused(self):
        d = harness.Daemon(config=CONFIG + "[apps.lock.rate_limits]\nmax_subject_failures = 101\n")
        try:
            with self.assertRaises(RuntimeError) as ctx:
                d.start(timeout=10)
            self.assertIn("apps.lock.rate_limits.max_subject_failures: must be between 1 and 100", str(ctx.exception))
        finally:
            d.cleanup()


if __name__ == "__main__":
    harness.main()

"""Fraud rules through the real twofactord with the injected clock: a
flagging rule audits "flagged:<rule>" and lets the send through; a blocking
rule refuses (exit 5, one line naming the rule), stores and sends nothing,
and lets sends through again once its window has moved on."""
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
[apps.default.rate_limits]
resend_cooldown = 0

[apps.strict]
[apps.strict.rate_limits]
resend_cooldown = 0
[apps.strict.fraud.distinct_destinations_per_ip]
threshold = 2
window = 600
action = "block"
[apps.strict.fraud.distinct_devices_per_destination]
threshold = 1
window = 600
action = "flag"
[apps.strict.fraud.destination_prefix]
threshold = 3
window = 300
action = "block"
"""


class Fraud(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG, clock=T0).start()
        cls.base = T0

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def setUp(self):
        type(self).base += 100_000
        self.d.set_clock(self.base)

    def at(self, offset):
        self.d.set_clock(self.base + offset)

    def send(self, to, *extra, app="strict"):
        return self.d.cli("send", "--app", app, "--to", to, *extra)

    def audit(self):
        r = self.d.cli("--json", "audit", "list", "--limit", "100000")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines()]

    def refused(self, r, rule):
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("fraud:" + rule, r.stderr)
        self.assertIn("fraud rule " + rule, r.stderr)

    def test_block_distinct_destinations_per_ip(self):
        ip = "203.0.113.9"
        self.assertEqual(self.send("fa@one.example", "--ip", ip).returncode, 0)
        self.assertEqual(self.send("fb@two.example", "--ip", ip).returncode, 0)
        before = len(self.d.outbox_files())
        r = self.send("fc@three.example", "--ip", ip)
        self.refused(r, "distinct_destinations_per_ip")
        self.assertIn("retry in 600 s", r.stderr)
        self.assertEqual(len(self.d.outbox_files()), before)
        self.assertEqual(self.audit()[-1]["outcome"], "refused:fraud:distinct_destinations_per_ip")
        # Another IP, or a known destination, is fine; the window moving on frees the IP.
        self.assertEqual(self.send("fc@three.example", "--ip", "203.0.113.10").returncode, 0)
        self.assertEqual(self.send("fa@one.example", "--ip", ip).returncode, 0)
        self.at(600)
        self.assertEqual(self.send("fc@three.example", "--ip", ip).returncode, 0)

    def test_flag_distinct_devices_per_destination(self):
        self.assertEqual(self.send("dev@devices.example", "--device", "phone").returncode, 0)
        r = self.send("dev@devices.example", "--device", "laptop")
        self.assertEqual(r.returncode, 0, r.stderr)
        flagged = [a for a in self.audit() if a["outcome"] == "flagged:distinct_devices_per_destination"]
        self.assertEqual(len(flagged), 1)
        self.assertIn("flagged", self.d.read_log())
        rec = json.dumps(flagged[0])
        self.assertNotIn("laptop", rec)
        self.assertNotIn("dev@devices.example", rec)

    def test_block_destination_prefix(self):
        # Three numbers of one range (+4915123456xxx), then a fourth: blocked.
        for i in range(3):
            self.assertEqual(self.send("+4915123456%03d" % i).returncode, 0)
        self.refused(self.send("+4915123456099"), "destination_prefix")
        self.assertEqual(self.send("+4915123457099").returncode, 0)
        self.at(300)
        self.assertEqual(self.send("+4915123456099").returncode, 0)

    def test_no_destination_range_for_email(self):
        # A domain is no range: many addresses at one provider are ordinary traffic.
        before = len(self.audit())
        for i in range(6):
            r = self.send("p%d@premium.example" % i)
            self.assertEqual(r.returncode, 0, r.stderr)
        outcomes = [a["outcome"] for a in self.audit()[before:]]
        self.assertEqual(outcomes, ["success"] * 6)

    def test_defaults_only_flag(self):
        for i in range(12):
            r = self.send("v%d@velocity.example" % i, "--ip", "198.51.100.20", app="default")
            self.assertEqual(r.returncode, 0, r.stderr)
        outcomes = [a["outcome"] for a in self.audit()]
        self.assertEqual(outcomes.count("flagged:distinct_destinations_per_ip"), 2)


if __name__ == "__main__":
    harness.main()

"""Breach reports through the real twofactord and twofactor (GDPR Art. 33, 34):
`twofactor breach report --from --to [--app] [-o FILE]` (dpo) over a store with
data inside and outside the window; a subject still within the delivery-log
period listed with its address, IPs and devices, one past it only as its keyed
hash with counts; the notice's totals per app; the 0600 file; the register
and audit entries; the role refused for an operator."""
import json
import os
import shutil
import stat
import tempfile
import unittest

import harness

T0 = 1_800_000_000  # 2027-01-15 08:00:00 UTC
DAY = 86400
OPERATOR, DPO = 2001, 2002

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]
[access.operator]
users = ["2001"]
[access.dpo]
users = ["2002"]

[retention]
schedule = "0 0 1 6 *"

[apps.shop]
[apps.shop.rate_limits]
resend_cooldown = 0
[apps.forum]
"""


class Breach(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="twofactor-breach-")
        os.chown(cls.tmp, DPO, DPO)  # the dpo writes the report there with its own credentials
        d = cls.d = harness.Daemon(config=CONFIG, clock=T0 - 10 * DAY).start()
        # Before the window.
        d.send("before@example.org", "shop", "--ip", "203.0.113.9")
        # In the window, and then past the 90-day delivery-log period.
        d.set_clock(T0)
        cls.old_id = d.send("old.subject@example.org", "shop", "--ip", "192.0.2.1", "--device", "Old Phone")
        # In the window, still within the period.
        d.set_clock(T0 + 100 * DAY)
        r = d.cli("retention", "run")
        assert r.returncode == 0, r.stderr
        cls.new_ids = [d.send("New.Subject@example.org", "shop", "--ip", "198.51.100.7", "--device", "Firefox 130"),
                       d.send("new.subject@example.org", "shop", "--ip", "198.51.100.8")]
        d.send("forum.user@example.org", "forum", "--ip", "198.51.100.20")
        # After the window.
        d.set_clock(T0 + 103 * DAY)
        d.send("after@example.org", "shop")
        cls.window = ["--from", str(T0 - DAY), "--to", str(T0 + 101 * DAY)]

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def report(self, *extra, user=DPO):
        r = self.d.cli("--json", "breach", "report", *self.window, *extra, user=user)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_subjects_in_the_window_contactable_or_hashed(self):
        doc = self.report()
        text = json.dumps(doc)
        for outside in ("before@example.org", "after@example.org", "203.0.113.9"):
            self.assertNotIn(outside, text)
        contactable = {s["address"]: s for s in doc["subjects"] if s["contactable"]}
        # Both spellings are one subject (local parts match without case); the newest spelling is the one shown.
        self.assertEqual(sorted(contactable), ["forum.user@example.org", "new.subject@example.org"])
        new = contactable["new.subject@example.org"]
        self.assertEqual((new["requests"], new["deliveries"], new["apps"]), (2, 2, ["shop"]))
        self.assertEqual(new["clientIps"], ["198.51.100.7", "198.51.100.8"])
        self.assertEqual(new["devices"], ["Firefox 130"])
        self.assertEqual(new["kind"], "email")
        # Past the delivery-log period the address, IP and device are gone:
        # the subject is its keyed hash, with counts; its deliveries were purged.
        [old] = [s for s in doc["subjects"] if not s["contactable"]]
        self.assertNotIn("old.subject", text)
        self.assertNotIn("192.0.2.1", text)
        self.assertNotIn("address", old)
        self.assertEqual((old["requests"], old["deliveries"], old["requestsWithClientIp"]), (1, 0, 0))
        self.assertRegex(old["subjectHash"], r"^[0-9a-f]{64}$")
        self.assertEqual(old["firstAt"], T0)

    def test_notice_totals_per_app_and_category(self):
        n = self.report()["notice"]
        self.assertEqual((n["dataSubjects"], n["contactable"], n["onlyHashed"]), (3, 2, 1))
        self.assertEqual(n["records"], 4 + 3)  # 4 requests, 3 delivery attempts still logged
        apps = {a["app"]: a for a in n["perApp"]}
        self.assertEqual(sorted(apps), ["forum", "shop"])
        self.assertEqual((apps["shop"]["dataSubjects"], apps["shop"]["requests"], apps["shop"]["deliveries"]),
                         (2, 3, 2))
        self.assertEqual(apps["shop"]["requestsWithClientIp"], 2)
        self.assertEqual((apps["forum"]["dataSubjects"], apps["forum"]["requests"]), (1, 1))
        categories = {c["category"]: c for c in n["categoriesOfData"]}
        self.assertEqual(categories["email addresses"]["dataSubjects"], 3)
        self.assertEqual(categories["client IP addresses"]["records"], 3)
        self.assertEqual(categories["device descriptions"]["records"], 1)

    def test_one_app_only(self):
        doc = self.report("--app", "forum")
        self.assertEqual(doc["app"], "forum")
        self.assertEqual([s["address"] for s in doc["subjects"]], ["forum.user@example.org"])
        self.assertEqual([a["app"] for a in doc["notice"]["perApp"]], ["forum"])

    def test_file_is_private_registered_and_audited(self):
        d = self.d
        path = os.path.join(self.tmp, "breach.json")
        r = d.cli("breach", "report", *self.window, "-o", path, user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertIn("data subjects  3 (2 contactable, 1 only as a keyed hash", r.stdout)
        self.assertNotIn("new.subject@example.org", r.stdout)  # the subjects are in the file
        with open(path) as f:
            doc = json.load(f)
        self.assertEqual(doc["format"], "twofactor-breach-report/1")
        self.assertEqual(len(doc["subjects"]), 3)
        self.assertEqual(doc["window"], {"from": T0 - DAY, "to": T0 + 101 * DAY})
        # An existing file is left alone without --force.
        r = d.cli("breach", "report", *self.window, "-o", path, user=DPO)
        self.assertEqual(r.returncode, 2)
        self.assertIn("already exists", r.stderr)
        reg = [json.loads(l) for l in d.cli("--json", "gdpr", "requests", user=DPO).stdout.splitlines()]
        entries = [e for e in reg if e["kind"] == "breach-report"]
        self.assertTrue(entries)
        self.assertIn("completed", entries[-1])
        self.assertIn("3 subject(s), 7 record(s)", entries[-1]["note"])
        self.assertEqual(entries[-1]["uid"], DPO)
        audit = [json.loads(l) for l in d.cli("--json", "audit", "list").stdout.splitlines()]
        records = [a for a in audit if a["event"] == "breach-report"]
        self.assertTrue(records)
        self.assertEqual((records[-1]["outcome"], records[-1]["uid"]), ("success", DPO))
        self.assertNotIn("new.subject", json.dumps(records))

    def test_operator_is_refused_and_nothing_recorded(self):
        d = self.d
        before = len(d.cli("--json", "gdpr", "requests").stdout.splitlines())
        r = d.cli("breach", "report", *self.window, user=OPERATOR)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(len(d.cli("--json", "gdpr", "requests").stdout.splitlines()), before)

    def test_bad_windows(self):
        d = self.d
        r = d.cli("breach", "report", "--from", str(T0), "--to", str(T0), user=DPO)
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid window", r.stderr)
        r = d.cli("breach", "report", "--from", "yesterday", "--to", str(T0), user=DPO)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--from", r.stderr)
        r = d.cli("breach", "report", "--from", str(T0), user=DPO)
        self.assertEqual(r.returncode, 2)

    def test_empty_window(self):
        r = self.d.cli("--json", "breach", "report", "--from", str(T0 + 50 * DAY), "--to", str(T0 + 51 * DAY),
                       user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual((doc["subjects"], doc["notice"]["dataSubjects"], doc["notice"]["records"]), ([], 0, 0))


if __name__ == "__main__":
    harness.main()

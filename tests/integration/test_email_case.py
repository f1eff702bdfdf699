"""Email addresses are matched without case in their local part, as in their
domain, unless an app opts out with email_local_part = "exact": verify by
address, limits and GDPR requests find "John.Doe@Example.org" under
"john.doe@example.org", while the code still goes to the address as given."""
import json
import os
import re
import subprocess
import unittest

import harness

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]
[access.dpo]
users = ["{uid}"]

[delivery]
email = "outbox"

[privacy]
controller = "Example Shop GmbH, Hauptstr. 1, 10115 Berlin"
contact = "privacy@example.org"

[apps.shop]
channels = ["email"]
[apps.shop.rate_limits]
resend_cooldown = 0

[apps.strict]
channels = ["email"]
email_local_part = "SHOP_MODE"
"""


def config(mode):
    return CONFIG.replace("SHOP_MODE", mode)


class EmailCase(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon(config=config("exact"))
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def verify(self, app, to, code):
        return self.d.cli("verify", "--app", app, "--to", to, "--code", code)

    def test_local_part_case_does_not_matter_by_default(self):
        d = self.d
        rid = d.send("John.Doe@Example.ORG", "shop")
        # Delivered to the local part as given (its case may matter to the
        # receiving server), the domain lower-cased as always.
        self.assertRegex(d.message_for(rid), re.compile(r"^To: .*John\.Doe@example\.org", re.M))
        r = self.verify("shop", "JOHN.DOE@example.org", "000000" if d.code_for(rid) != "000000" else "111111")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout.strip(), "pending")  # found, and the wrong code counted against it
        r = self.verify("shop", "john.doe@example.org", d.code_for(rid))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_an_exact_app_keeps_local_parts_apart(self):
        d = self.d
        rid = d.send("Jane@example.org", "strict")
        r = self.verify("strict", "jane@example.org", d.code_for(rid))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn("no pending request for that app and destination", r.stderr)
        r = self.verify("strict", "Jane@example.org", d.code_for(rid))
        self.assertEqual(r.returncode, 0, r.stderr)

    def export_ids(self, subject):
        r = self.d.cli("--json", "gdpr", "export", "--subject", subject)
        self.assertEqual(r.returncode, 0, r.stderr)
        return sorted(q["id"] for q in json.loads(r.stdout)["data"]["requests"])

    def test_gdpr_requests_find_every_case_and_both_kinds_of_app(self):
        d = self.d
        shop = d.send("Mary.Major@example.org", "shop")
        strict = d.send("Mary.Major@example.org", "strict")
        # Any case finds what a case-insensitive app holds; what an exact app
        # holds is found by the address as that app was given it.
        self.assertEqual(self.export_ids("mary.major@EXAMPLE.org"), [shop])
        self.assertEqual(self.export_ids("Mary.Major@Example.org"), sorted([shop, strict]))
        r = d.cli("gdpr", "restrict", "--subject", "Mary.Major@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        for app in ("shop", "strict"):
            r = d.cli("send", "--app", app, "--to", "Mary.Major@example.org")
            self.assertEqual(r.returncode, 5, (app, r.stdout, r.stderr))
        r = d.cli("gdpr", "unrestrict", "--subject", "Mary.Major@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = d.cli("--json", "gdpr", "delete", "--subject", "Mary.Major@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["erased"]["requests"], 2)
        self.assertEqual(self.export_ids("Mary.Major@example.org"), [])

    def test_requests_filed_before_an_app_matched_without_case_still_verify(self):
        d = self.d
        # "strict" files by the exact form; switched to case-insensitive, its
        # pending requests are still found by the address as it was given.
        rid = d.send("Old.Style@example.org", "strict")
        d.stop()
        with open(d.config_path, "w") as f:
            f.write(config("case-insensitive").format(root=d.root, uid=os.getuid()))
        d.start()
        r = self.verify("strict", "Old.Style@example.org", d.code_for(rid))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_bad_value_is_named(self):
        d = harness.Daemon(config=config("lower"))
        try:
            p = subprocess.run(d.args() + ["--check-config"], capture_output=True, text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("apps.strict.email_local_part", p.stderr)
            self.assertIn('must be one of case-insensitive, exact, not "lower"', p.stderr)
        finally:
            d.cleanup()


if __name__ == "__main__":
    harness.main()

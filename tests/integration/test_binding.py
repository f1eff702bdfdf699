"""Transaction binding: a code sent with --bind is bound to that context. The
message shows it ({{context.KEY}} in the template, else appended), verify
approves only with the same context, a resend needs it, bad entries are
refused by name with nothing stored, and the store, the audit log and the
daemon's log never hold a value: only a keyed digest."""
import json
import os
import subprocess
import unittest

import harness
import sqlcipher_scan


def store_key(d):
    with open(os.path.join(d.state, "keys", "store.key")) as f:
        return bytes.fromhex(f.read().strip())

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[apps.pay]
max_attempts = 5
[apps.pay.rate_limits]
resend_cooldown = 0
[apps.pay.templates.en]
subject = "Confirm your payment"
text = "{{{{code}}}} approves {{{{context.amount}}}} to {{{{context.payee}}}}."
html = "<p><b>{{{{code}}}}</b> approves {{{{context.amount}}}} to {{{{context.payee}}}}.</p>"

[apps.plain]
[apps.plain.rate_limits]
resend_cooldown = 0
"""

AMOUNT = "49.90 EUR"
PAYEE = "Shop GmbH & Co <KG>"


class BindingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def send(self, app, to, *binds):
        args = ["send", "--app", app, "--to", to]
        for b in binds:
            args += ["--bind", b]
        return self.d.cli(*args)

    def verify(self, rid, code, *binds):
        args = ["verify", "--id", rid, "--code", code]
        for b in binds:
            args += ["--bind", b]
        return self.d.cli(*args)

    def test_message_shows_the_context(self):
        r = self.send("pay", "anna@example.org", "amount=" + AMOUNT, "payee=" + PAYEE)
        self.assertEqual(r.returncode, 0, r.stderr)
        msg = self.d.message_for(r.stdout.strip())
        code = self.d.code_for(r.stdout.strip())
        self.assertIn("%s approves %s to %s." % (code, AMOUNT, PAYEE), msg)
        # HTML-escaped in the HTML part
        self.assertIn("approves 49.90 EUR to Shop GmbH &amp; Co &lt;KG&gt;.", msg)

    def test_same_context_approves(self):
        rid = self.send("pay", "ben@example.org", "amount=" + AMOUNT, "payee=" + PAYEE).stdout.strip()
        code = self.d.code_for(rid)
        r = self.verify(rid, code, "payee=" + PAYEE, "amount=" + AMOUNT)  # order does not matter
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)

    def test_other_context_fails_and_counts(self):
        rid = self.send("pay", "cem@example.org", "amount=" + AMOUNT, "payee=" + PAYEE).stdout.strip()
        code = self.d.code_for(rid)
        for binds in (("amount=4990.00 EUR", "payee=" + PAYEE), ("amount=" + AMOUNT,), ()):
            r = self.verify(rid, code, *binds)
            self.assertEqual(r.returncode, 1, (binds, r.stdout, r.stderr))
            self.assertEqual(r.stdout.strip(), "pending")
        status = json.loads(self.d.cli("--json", "status", rid).stdout)
        self.assertEqual(status["attempts"], 3)
        # The right context still approves, within the attempt limit.
        r = self.verify(rid, code, "amount=" + AMOUNT, "payee=" + PAYEE)
        self.assertEqual(r.returncode, 0, r.stderr)
        # The audit log tells a wrong context from a wrong code, without the values.
        audit = self.d.cli("--json", "audit", "list", "--app", "pay").stdout
        self.assertIn("context differs from the one bound at send", audit)

    def test_unbound_code_refuses_a_context(self):
        rid = self.d.send("dan@example.org", "plain")
        code = self.d.code_for(rid)
        r = self.verify(rid, code, "amount=1 EUR")
        self.assertEqual(r.returncode, 1, r.stderr)
        r = self.verify(rid, code)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_appended_when_the_template_shows_none(self):
        r = self.send("plain", "eva@example.org", "amount=12.00 EUR", "payee=Bakery")
        self.assertEqual(r.returncode, 0, r.stderr)
        msg = self.d.message_for(r.stdout.strip())
        body = msg.split("\n\n", 1)[1]
        self.assertIn("amount: 12.00 EUR", body)
        self.assertIn("payee: Bakery", body)

    def test_template_key_must_be_bound(self):
        before = len(self.d.outbox_files())
        r = self.send("pay", "finn@example.org", "amount=" + AMOUNT)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--bind refused", r.stderr)
        r = self.send("pay", "finn@example.org")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(self.d.outbox_files()), before)

    def test_bad_entries_are_refused_by_name(self):
        before = len(self.d.outbox_files())
        cases = [
            ("Amount=1",),                      # upper-case key
            ("amount=",),                       # empty value
            ("amount=" + "9" * 201,),           # too long
            ("amount=1\x07",),                  # control character
            ("amount={{code}}",),               # looks like a placeholder
            tuple("k%d=v" % i for i in range(9)),  # too many
        ]
        for binds in cases:
            r = self.send("plain", "gil@example.org", *binds)
            self.assertEqual(r.returncode, 2, (binds, r.stderr))
            self.assertIn("--bind", r.stderr)
        r = self.send("plain", "gil@example.org", "amount")
        self.assertEqual(r.returncode, 2)
        self.assertIn("KEY=VALUE", r.stderr)
        r = self.send("plain", "gil@example.org", "amount=1", "amount=2")
        self.assertEqual(r.returncode, 2)
        self.assertIn("given twice", r.stderr)
        self.assertEqual(len(self.d.outbox_files()), before, "a refused send sent something")

    def test_resend_needs_the_context(self):
        rid = self.send("pay", "hal@example.org", "amount=" + AMOUNT, "payee=" + PAYEE).stdout.strip()
        r = self.d.cli("resend", rid)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("bound to another context", r.stderr)
        r = self.d.cli("resend", rid, "--bind", "amount=" + AMOUNT, "--bind", "payee=" + PAYEE)
        self.assertEqual(r.returncode, 0, r.stderr)
        code = self.d.code_for(rid, attempt=2)
        self.assertIn("approves %s to %s" % (AMOUNT, PAYEE), self.d.message_for(rid, attempt=2))
        r = self.verify(rid, code, "amount=" + AMOUNT, "payee=" + PAYEE)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_whatsapp_refuses_a_context(self):
        r = self.d.call("io.twofactor.Otp.Send", {"app": "plain", "destination": "+4915112345678",
                                                   "context": {"amount": "1 EUR"}})
        self.assertEqual(r.get("error"), "org.varlink.service.InvalidParameter", r)
        self.assertEqual(r["parameters"]["parameter"], "context")

    def test_values_are_stored_nowhere(self):
        marker = "Payee-Marker-7731"
        rid = self.send("pay", "ida@example.org", "amount=" + AMOUNT, "payee=" + marker).stdout.strip()
        self.verify(rid, "000000", "amount=" + AMOUNT, "payee=other")
        audit = self.d.cli("--json", "audit", "list", "--app", "pay").stdout
        self.assertNotIn(marker, audit)
        self.assertIn("bound to context digest ", audit)
        self.assertNotIn(marker, self.d.read_log())
        # Every decrypted page of the database and its WAL: the value is not
        # there, while the address of the same request is.
        db = os.path.join(self.d.state, "twofactor.db")
        key = store_key(self.d)
        self.assertFalse(sqlcipher_scan.contains(db, key, marker), "a bound value reached the database")
        self.assertTrue(sqlcipher_scan.contains(db, key, "ida@example.org"), "the scan must see live data")


if __name__ == "__main__":
    harness.main()

"""The OTP lifecycle through the real twofactord and the real twofactor CLI."""
import concurrent.futures
import json
import os
import subprocess
import time
import unittest

import harness


def wait_until(predicate, seconds=10):
    """The outbox is cleaned after the answer, on a delivery thread."""
    deadline = time.time() + seconds
    while time.time() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()

T0 = 1_800_000_000  # the injected clock's start


class Lifecycle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(clock=T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def setUp(self):
        self.d.set_clock(T0)

    def test_send_outbox_verify(self):
        rid = self.d.send("alice@example.org")
        self.assertRegex(rid, r"^[a-z2-7]{26}$")
        msg = self.d.message_for(rid)
        self.assertIn("To: alice@example.org", msg)
        code = self.d.code_for(rid)
        self.assertEqual(len(code), 6)
        r = self.d.cli("verify", "--id", rid, "--code", code)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
        # Single use: the same code again is rejected.
        r = self.d.cli("verify", "--id", rid, "--code", code)
        self.assertEqual((r.returncode, r.stdout.strip()), (1, "already-approved"))

    def test_outbox_email_is_a_mime_message_with_both_parts(self):
        import email
        import email.policy
        rid = self.d.send("mime@example.org", "default", "--locale", "de")
        msg = email.message_from_bytes(self.d.message_for(rid).encode("utf-8"), policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        self.assertEqual(msg["Auto-Submitted"], "auto-generated")
        self.assertEqual(msg["Subject"], "Ihr Anmeldecode für twofactor")  # decoded from RFC 2047; the login wording
        code = self.d.code_for(rid)
        self.assertNotIn(code, msg["Subject"])
        parts = {p.get_content_type(): p.get_content() for p in msg.walk() if not p.is_multipart()}
        self.assertEqual(set(parts), {"text/plain", "text/html"})
        for body in parts.values():
            self.assertIn(code, body)

    def test_outbox_whatsapp_is_plain_text(self):
        import email
        rid = self.d.send("+33612345678")
        msg = email.message_from_string(self.d.message_for(rid))
        self.assertEqual(msg.get_content_type(), "text/plain")
        self.assertEqual(msg["To"], "+33612345678")

    def test_outbox_file_is_private(self):
        rid = self.d.send("mode@example.org")
        path = [p for p in self.d.outbox_files() if rid in p][0]
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)

    def test_wrong_code_counts(self):
        rid = self.d.send("bob@example.org")
        code = self.d.code_for(rid)
        wrong = "%06d" % ((int(code) + 1) % 1000000)
        r = self.d.cli("verify", "--id", rid, "--code", wrong)
        self.assertEqual((r.returncode, r.stdout.strip()), (1, "pending"))
        r = self.d.cli("--json", "status", rid)
        self.assertEqual(json.loads(r.stdout)["attempts"], 1)
        r = self.d.cli("verify", "--id", rid, "--code", code)
        self.assertEqual(r.returncode, 0)

    def test_lock_after_five_wrong_codes(self):
        rid = self.d.send("carol@example.org")
        code = self.d.code_for(rid)
        wrong = "%06d" % ((int(code) + 7) % 1000000)
        for i in range(5):
            r = self.d.cli("verify", "--id", rid, "--code", wrong)
            self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout.strip(), "locked")
        r = self.d.cli("verify", "--id", rid, "--code", code)
        self.assertEqual((r.returncode, r.stdout.strip()), (1, "locked"))

    def test_expiry_with_injected_clock(self):
        a = self.d.send("dave@example.org", "default", "--ttl", "60")
        b = self.d.send("dave2@example.org", "default", "--ttl", "60")
        self.d.set_clock(T0 + 59)
        r = self.d.cli("verify", "--id", a, "--code", self.d.code_for(a))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"))
        self.d.set_clock(T0 + 60)
        r = self.d.cli("verify", "--id", b, "--code", self.d.code_for(b))
        self.assertEqual((r.returncode, r.stdout.strip()), (1, "expired"))

    def test_hundred_concurrent_verifies_approve_once(self):
        rid = self.d.send("erin@example.org")
        code = self.d.code_for(rid)

        def one(_):
            return self.d.cli("verify", "--id", rid, "--code", code).returncode

        # 60 at once: under the default max_connections_per_uid (64), which
        # would refuse some of them (exit 4) on a loaded machine.
        with concurrent.futures.ThreadPoolExecutor(max_workers=60) as pool:
            codes = list(pool.map(one, range(100)))
        self.assertEqual(codes.count(0), 1)
        self.assertEqual(codes.count(1), 99)

    def test_verify_by_app_and_destination_uses_newest(self):
        old = self.d.send("Frank@Example.ORG")
        self.d.set_clock(T0 + 30)  # past the resend cooldown of that destination
        new = self.d.send("Frank@example.org")
        r = self.d.cli("verify", "--app", "default", "--to", "Frank@EXAMPLE.org", "--code", self.d.code_for(old))
        self.assertEqual(r.returncode, 1)
        r = self.d.cli("verify", "--app", "default", "--to", "Frank@example.org", "--code", self.d.code_for(new))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)

    def test_code_from_stdin(self):
        rid = self.d.send("grace@example.org")
        r = self.d.cli("verify", "--id", rid, "--code", "-", input=self.d.code_for(rid) + "\n")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)

    def test_cancel(self):
        rid = self.d.send("heidi@example.org")
        code = self.d.code_for(rid)
        r = self.d.cli("cancel", rid)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "canceled"))
        # Its message, now holding a useless code, leaves the outbox.
        self.assertTrue(wait_until(lambda: not [p for p in self.d.outbox_files() if "." + rid + "." in p]))
        r = self.d.cli("verify", "--id", rid, "--code", code)
        self.assertEqual((r.returncode, r.stdout.strip()), (1, "canceled"))
        r = self.d.cli("cancel", rid)
        self.assertEqual(r.returncode, 1)
        self.assertIn("canceled", r.stderr)

    def test_resend_replaces_code_keeps_attempts(self):
        rid = self.d.send("ivan@example.org")
        first = self.d.code_for(rid, attempt=1)
        wrong = "%06d" % ((int(first) + 3) % 1000000)
        self.d.cli("verify", "--id", rid, "--code", wrong)
        self.d.set_clock(T0 + 30)  # past the resend cooldown
        r = self.d.cli("resend", rid)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, rid), r.stderr)
        second = self.d.code_for(rid, attempt=2)
        st = json.loads(self.d.cli("--json", "status", rid).stdout)
        self.assertEqual((st["attempts"], st["sends"]), (1, 2))
        if first != second:
            r = self.d.cli("verify", "--id", rid, "--code", first)
            self.assertEqual((r.returncode, r.stdout.strip()), (1, "pending"))
        r = self.d.cli("verify", "--id", rid, "--code", second)
        self.assertEqual(r.returncode, 0)

    def test_resend_limit(self):
        rid = self.d.send("judy@example.org")
        for i in range(4):
            self.d.set_clock(T0 + 30 * (i + 1))  # past the resend cooldown each time
            self.assertEqual(self.d.cli("resend", rid).returncode, 0)
        self.d.set_clock(T0 + 150)
        r = self.d.cli("resend", rid)
        self.assertEqual(r.returncode, 5)
        self.assertIn("limit of 5 sends", r.stderr)

    def test_status_json_and_text(self):
        rid = self.d.send("+4915112345678", "default", "--reference", "order-7")
        st = json.loads(self.d.cli("--json", "status", rid).stdout)
        self.assertEqual(st["channel"], "whatsapp")
        self.assertEqual(st["status"], "pending")
        self.assertEqual(st["reference"], "order-7")
        self.assertNotIn("15112345678", st["destination"])  # masked
        self.assertEqual(st["expiresAt"] - st["createdAt"], 600)
        text = self.d.cli("status", rid).stdout
        self.assertIn("status       pending", text)

    def test_delivery_log(self):
        rid = self.d.send("log@example.org")
        r = self.d.cli("--json", "deliveries", rid)
        self.assertEqual(r.returncode, 0, r.stderr)
        attempts = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(len(attempts), 1)
        a = attempts[0]
        self.assertEqual((a["outcome"], a["driver"], a["send"], a["attempt"]), ("accepted", "outbox", 1, 1))
        self.assertIn(rid, a["providerMessageId"])
        self.d.set_clock(T0 + 30)  # past the resend cooldown
        self.assertEqual(self.d.cli("resend", rid).returncode, 0)
        text = self.d.cli("deliveries", rid).stdout
        self.assertEqual(len(text.splitlines()), 2)
        self.assertIn(" 2.1 ", text)
        self.assertNotIn("log@example.org", r.stdout + text)
        # By time: the injected clock says when.
        r = self.d.cli("--json", "deliveries", "--since", str(T0), "--until", str(T0 + 1))
        self.assertTrue(any(json.loads(l)["requestId"] == rid for l in r.stdout.splitlines()))
        r = self.d.cli("deliveries", "--since", "yesterday")
        self.assertEqual(r.returncode, 2)

    def test_delivery_failure_exit_6(self):
        new = os.path.join(self.d.state, "outbox", "new")
        os.rename(new, new + ".away")
        try:
            r = self.d.cli("send", "--app", "default", "--to", "fail@example.org")
        finally:
            os.rename(new + ".away", new)
        self.assertEqual(r.returncode, 6, r.stderr)
        self.assertIn("delivery failed", r.stderr)
        rid = r.stderr.strip().rsplit("request ", 1)[1].rstrip(")")
        st = json.loads(self.d.cli("--json", "status", rid).stdout)
        self.assertEqual(st["status"], "failed")
        a = [json.loads(l) for l in self.d.cli("--json", "deliveries", rid).stdout.splitlines()]
        self.assertEqual([x["outcome"] for x in a], ["failed"])
        self.assertEqual(a[0]["errorClass"], "io")

    def test_send_no_wait(self):
        r = self.d.cli("--json", "send", "--app", "default", "--to", "nowait@example.org", "--no-wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["delivery"], "queued")
        rid = out["request"]["id"]
        for _ in range(100):
            if any(rid in p for p in self.d.outbox_files()):
                break
            time.sleep(0.05)
        self.assertEqual(self.d.cli("verify", "--id", rid, "--code", self.d.code_for(rid)).returncode, 0)

    def test_unknown_request(self):
        r = self.d.cli("status", "nosuchrequest")
        self.assertEqual(r.returncode, 7)
        self.assertIn("no request with id nosuchrequest", r.stderr)
        r = self.d.cli("verify", "--id", "nosuchrequest", "--code", "123456")
        self.assertEqual(r.returncode, 1)

    def test_invalid_input_exit_2(self):
        cases = [
            (["send", "--app", "default", "--to", "not-an-address"], "invalid destination"),
            (["send", "--app", "default", "--to", "a@b"], "invalid destination"),
            (["send", "--app", "nope", "--to", "x@example.org"], "no app named 'nope'"),
            (["send", "--app", "default", "--to", "x@example.org", "--ttl", "999999"], "--ttl must be between"),
            (["send", "--app", "default", "--to", "x@example.org", "--length", "3"], "--length must be between"),
            (["send", "--app", "default", "--to", "x@example.org", "--channel", "whatsapp"], "needs a phone number"),
            (["send", "--app", "default", "--to", "x@example.org", "--ip", "999.1.1.1"], "--ip"),
            (["verify", "--id", "abc", "--code", "12ab56"], "--code"),
            (["send", "--to", "x@example.org"], "--app"),
        ]
        for args, needle in cases:
            r = self.d.cli(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(needle, r.stderr, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_length_and_locale(self):
        rid = self.d.send("kim@example.org", "default", "--length", "8", "--locale", "de", "--purpose", "verify")
        self.assertEqual(len(self.d.code_for(rid)), 8)
        msg = self.d.message_for(rid)
        self.assertIn("X-Twofactor-Locale: de", msg)

    def test_daemon_unreachable_exit_3(self):
        r = subprocess.run([harness.TWOFACTOR, "--socket", "/nonexistent/sock", "status", "x"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 3)
        self.assertIn("cannot reach twofactord", r.stderr)

    def test_socket_from_environment(self):
        rid = self.d.send("leo@example.org")
        r = subprocess.run([harness.TWOFACTOR, "status", rid], capture_output=True, text=True,
                           env=dict(os.environ, TWOFACTOR_SOCKET=self.d.socket))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_no_role_is_refused(self):
        rid = self.d.send("mallory@example.org")
        r = self.d.cli("status", rid, user=65534)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("permission denied", r.stderr)
        r = self.d.cli("send", "--app", "default", "--to", "x@example.org", user=65534)
        self.assertEqual(r.returncode, 4)
        r = self.d.cli("whoami", user=65534)
        self.assertEqual(r.returncode, 0)
        self.assertIn("(none)", r.stdout)
        self.assertIn("permission denied", self.d.read_log())

    def audit(self, *args, user=None):
        r = self.d.cli("--json", "audit", "list", "--limit", "100000", *args, user=user)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines()]

    def test_audit_records_send_verify_and_denial(self):
        rid = self.d.send("audra@example.org")
        code = self.d.code_for(rid)
        wrong = ("0" if code[0] == "9" else str(int(code[0]) + 1)) + code[1:]
        self.assertEqual(self.d.cli("verify", "--id", rid, "--code", wrong).returncode, 1)
        self.assertEqual(self.d.cli("verify", "--id", rid, "--code", code).returncode, 0)
        mine = [r for r in self.audit() if r.get("requestId") == rid]
        self.assertEqual([(r["event"], r["outcome"]) for r in mine],
                         [("send", "success"), ("verify", "rejected"), ("verify", "approved")])
        self.assertEqual(mine[0]["uid"], os.getuid())
        self.assertEqual(mine[0]["time"], T0)
        # Text lines too, and never the code or the address.
        r = self.d.cli("audit", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(rid, r.stdout)
        self.assertNotIn("audra", r.stdout)
        everything = self.d.cli("audit", "export").stdout
        self.assertNotIn("audra", everything)
        self.assertNotIn(code, everything.replace(rid, ""))
        self.assertTrue(any(r["event"] == "config-load" for r in self.audit()))
        # A denial is refused (exit 4) and audited: a uid's first at once,
        # later ones counted per window (test_flood.py). Another uid than
        # the other tests' 65534, whose window may be open.
        r = self.d.cli("audit", "list", user=65533)
        self.assertEqual(r.returncode, 4, r.stderr)
        r = self.d.cli("audit", "verify", user=65533)
        self.assertEqual(r.returncode, 4, r.stderr)
        denied = self.audit("--outcome", "denied")
        self.assertTrue(any(r["event"] == "permission-denied" and r["uid"] == 65533 and
                            r["detail"] == "io.twofactor.Audit.List" for r in denied), denied)
        r = self.d.cli("audit", "verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.strip(), r"^ok [0-9]+ records$")

    def test_audit_time_filters_and_export(self):
        self.d.set_clock(T0 + 86400)
        rid = self.d.send("audrey@example.org")
        since = self.audit("--since", "2027-01-16T08:00:00Z")  # T0 + 1 day is 2027-01-16T08:00:00Z
        self.assertTrue(since and all(r["time"] >= T0 + 86400 for r in since), since)
        self.assertIn(rid, [r.get("requestId") for r in since])
        self.assertNotIn(rid, [r.get("requestId") for r in self.audit("--until", str(T0 + 86400))])
        r = self.d.cli("audit", "export", "--from", str(T0 + 86400), "--to", str(T0 + 86401))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertIn(rid, [x.get("requestId") for x in lines])
        for x in lines:
            self.assertEqual(len(x["hash"]), 64)
        r = self.d.cli("audit", "list", "--since", "yesterday")
        self.assertEqual(r.returncode, 2)

    def test_requests_survive_restart(self):
        rid = self.d.send("nina@example.org")
        code = self.d.code_for(rid)
        self.d.stop()
        self.d.start()
        r = self.d.cli("verify", "--id", rid, "--code", code)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_logs_hold_no_codes(self):
        rid = self.d.send("olga@example.org")
        code = self.d.code_for(rid)
        self.d.cli("verify", "--id", rid, "--code", code)
        log = self.d.read_log()
        self.assertIn(rid, log)
        self.assertNotIn(code, log)
        self.assertNotIn("olga@example.org", log)


if __name__ == "__main__":
    harness.main()

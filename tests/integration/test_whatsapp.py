"""WhatsApp end to end: the real twofactord sending through a loopback Graph API
mock, Meta's webhooks (signed status updates, STOP/START) through its listener,
the opt-out list, country rules and the email fallback."""
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import harness
from test_email import attempts, private, start_mock, stop_mock, wait_for

SRC = os.environ["TWOFACTOR_SOURCE_DIR"]
APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "verify-me"

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[delivery]
email = "outbox"
whatsapp = "whatsapp"

[whatsapp]
graph_url = "http://127.0.0.1:PORT"
api_version = "v21.0"
phone_number_id = "106540352242922"
token_file = "{root}/wa-token"
timeout = 3
pair_backoff = 1

[webhook]
enabled = true
listen = "127.0.0.1"
port = 0
path = "/whatsapp"
verify_token_file = "{root}/wa-verify"
app_secret_file = "{root}/wa-secret"

[retry]
max_attempts = 3
base_delay_ms = 50
max_delay_ms = 100

[apps.shop]
display_name = "Shop"
channels = ["email", "whatsapp"]
fallback_to_email = true
denied_countries = ["RU"]

# STOP/START sends to one number three times in a row; the cooldown has tests of its own.
[apps.shop.rate_limits]
resend_cooldown = 0

[apps.shop.whatsapp_templates]
en = {{ name = "otp_login", language = "en_US" }}
de = {{ name = "otp_login", language = "de" }}
"""


class Whatsapp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="twofactor-wa-")
        cls.log = os.path.join(cls.tmp, "graph.jsonl")
        cls.control = os.path.join(cls.tmp, "control.json")
        with open(cls.control, "w") as f:
            json.dump({}, f)
        port_file = os.path.join(cls.tmp, "port")
        cls.mock, port = start_mock([os.path.join(SRC, "tests/mock/graph_server.py"), "--port-file", port_file,
                                     "--log", cls.log, "--token", "EAAG-test-token", "--control", cls.control],
                                    port_file)
        cls.d = harness.Daemon(config=CONFIG.replace("PORT", str(port)))
        private(os.path.join(cls.d.root, "wa-token"), "EAAG-test-token\n")
        private(os.path.join(cls.d.root, "wa-verify"), VERIFY_TOKEN + "\n")
        private(os.path.join(cls.d.root, "wa-secret"), APP_SECRET + "\n")
        cls.d.start()
        m = wait_for(lambda: re.search(r"webhook: listening on 127\.0\.0\.1:(\d+)/whatsapp", cls.d.read_log()), 10)
        cls.hook = "http://127.0.0.1:%s/whatsapp" % m.group(1)

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        stop_mock(cls.mock)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def control_set(self, mapping):
        with open(self.control + ".tmp", "w") as f:
            json.dump(mapping, f)
        os.replace(self.control + ".tmp", self.control)

    def graph_requests(self, number):
        out = []
        if os.path.exists(self.log):
            for line in open(self.log):
                e = json.loads(line)
                if (e.get("json") or {}).get("to") == number:
                    out.append(e)
        return out

    def code_in(self, entry):
        return entry["json"]["template"]["components"][0]["parameters"][0]["text"]

    def post(self, payload, secret=APP_SECRET, signature=None):
        body = json.dumps(payload).encode()
        sig = signature if signature is not None else \
            "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        req = urllib.request.Request(self.hook, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    @staticmethod
    def envelope(value):
        return {"object": "whatsapp_business_account",
                "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}]}

    def inbound(self, number, text):
        return self.envelope({"messaging_product": "whatsapp",
                              "contacts": [{"profile": {"name": "X"}, "wa_id": number.lstrip("+")}],
                              "messages": [{"from": number.lstrip("+"), "id": "wamid.in%d" % time.time_ns(),
                                            "timestamp": str(int(time.time())), "type": "text",
                                            "text": {"body": text}}]})

    def test_send_template_and_verify(self):
        r = self.d.cli("send", "--app", "shop", "--to", "+49 151 12345678", "--locale", "de")
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        rid = r.stdout.strip()
        [req] = self.graph_requests("+4915112345678")
        self.assertEqual(req["headers"]["authorization"], "Bearer EAAG-test-token")
        t = req["json"]["template"]
        self.assertEqual((t["name"], t["language"]["code"]), ("otp_login", "de"))
        code = self.code_in(req)
        self.assertEqual(t["components"][1]["parameters"][0]["text"], code)
        [a] = attempts(self.d, rid)
        self.assertEqual((a["driver"], a["outcome"]), ("whatsapp", "accepted"))
        self.assertTrue(a["providerMessageId"].startswith("wamid."))
        self.assertEqual(self.d.cli("verify", "--id", rid, "--code", code).returncode, 0)

    def test_status_webhook_updates_delivery_log(self):
        rid = self.d.send("+4915112340001", "shop")
        wamid = attempts(self.d, rid)[0]["providerMessageId"]
        status = lambda s, ts: self.envelope({"messaging_product": "whatsapp", "statuses": [
            {"id": wamid, "status": s, "timestamp": str(ts), "recipient_id": "4915112340001"}]})
        self.assertEqual(self.post(status("read", 2000000000)), 200)
        self.assertEqual(self.post(status("delivered", 1999999999)), 200)  # late, older: ignored
        a = wait_for(lambda: [x for x in attempts(self.d, rid) if x.get("providerStatus") == "read"])
        self.assertTrue(a, attempts(self.d, rid))
        self.assertEqual(a[0]["providerStatusAt"], 2000000000)
        text = self.d.cli("deliveries", rid).stdout
        self.assertIn("[read ", text)

    def test_statuses_only_move_forward(self):
        rid = self.d.send("+4915112340009", "shop")
        wamid = attempts(self.d, rid)[0]["providerMessageId"]
        status = lambda s, ts: self.envelope({"messaging_product": "whatsapp", "statuses": [
            {"id": wamid, "status": s, "timestamp": str(ts), "recipient_id": "4915112340009"}]})
        current = lambda: attempts(self.d, rid)[0].get("providerStatus")
        self.assertEqual(self.post(status("read", 2000000100)), 200)
        wait_for(lambda: current() == "read")
        # Webhooks come out of order: a late "sent" or "delivered", even in the
        # same second or a later one, does not undo "read". The store takes the
        # updates in the order they were posted, before the listing below.
        self.assertEqual(self.post(status("sent", 2000000100)), 200)
        self.assertEqual(self.post(status("delivered", 2000000101)), 200)
        self.assertEqual(current(), "read")
        self.assertEqual(attempts(self.d, rid)[0]["providerStatusAt"], 2000000100)
        # failed is final.
        self.assertEqual(self.post(status("failed", 2000000102)), 200)
        wait_for(lambda: current() == "failed")
        self.assertEqual(self.post(status("read", 2000000103)), 200)
        self.assertEqual(current(), "failed")

    def test_bad_signature_refused_and_ignored(self):
        before = self.d.cli("optout", "list").stdout
        self.assertEqual(self.post(self.inbound("+4915112340002", "STOP"), secret="wrong"), 401)
        self.assertEqual(self.post(self.inbound("+4915112340002", "STOP"), signature=""), 401)
        time.sleep(0.3)
        self.assertEqual(self.d.cli("optout", "list").stdout, before)
        self.assertIn("X-Hub-Signature-256", self.d.read_log())

    def test_verification_handshake(self):
        ok = urllib.request.urlopen(self.hook + "?hub.mode=subscribe&hub.challenge=12345&hub.verify_token="
                                    + VERIFY_TOKEN, timeout=10)
        self.assertEqual((ok.status, ok.read()), (200, b"12345"))
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            urllib.request.urlopen(self.hook + "?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope", timeout=10)
        self.assertEqual(ctx.exception.code, 403)

    def test_stop_and_start_end_to_end(self):
        number = "+4915112340003"
        self.assertEqual(self.d.cli("send", "--app", "shop", "--to", number).returncode, 0)
        self.assertEqual(self.post(self.inbound(number, "  stop ")), 200)
        wait_for(lambda: number in self.d.cli("optout", "list").stdout)
        self.assertIn("webhook", self.d.cli("optout", "list").stdout)
        # Whatever the spelling of the reply, the reason reads the same.
        [entry] = [json.loads(l) for l in self.d.cli("--json", "optout", "list").stdout.splitlines()
                   if number in l]
        self.assertEqual(entry["reason"], "replied STOP")
        r = self.d.cli("send", "--app", "shop", "--to", number)
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("opted-out", r.stderr)
        sent = len(self.graph_requests(number))
        self.assertEqual(self.post(self.inbound(number, "START")), 200)
        wait_for(lambda: number not in self.d.cli("optout", "list").stdout)
        self.assertEqual(self.d.cli("send", "--app", "shop", "--to", number).returncode, 0)
        self.assertEqual(len(self.graph_requests(number)), sent + 1)

    def test_resend_refused_after_stop(self):
        number = "+4915112340004"
        rid = self.d.send(number, "shop")
        self.assertEqual(self.post(self.inbound(number, "UNSUBSCRIBE")), 200)
        wait_for(lambda: number in self.d.cli("optout", "list").stdout)
        r = self.d.cli("resend", rid)
        self.assertEqual(r.returncode, 5, r.stderr)

    def test_optout_cli_and_roles(self):
        number = "+4915112340005"
        r = self.d.cli("optout", "add", number, "--reason", "asked by phone")
        self.assertEqual(r.returncode, 0, r.stderr)
        entries = [json.loads(l) for l in self.d.cli("--json", "optout", "list").stdout.splitlines()]
        [e] = [x for x in entries if x["destination"] == number]
        self.assertEqual((e["source"], e["reason"]), ("cli", "asked by phone"))
        self.assertEqual(self.d.cli("send", "--app", "shop", "--to", number).returncode, 5)
        self.assertEqual(self.d.cli("optout", "remove", number).returncode, 0)
        self.assertEqual(self.d.cli("optout", "remove", number).returncode, 7)
        self.assertEqual(self.d.cli("optout", "list", user=65534).returncode, 4)
        self.assertEqual(self.d.cli("optout", "add", "not-a-number").returncode, 2)

    def test_retry_codes_then_accepted(self):
        number = "+4915112340006"
        self.control_set({number: [130429, 131000]})
        r = self.d.cli("send", "--app", "shop", "--to", number)
        self.assertEqual(r.returncode, 0, r.stderr)
        a = attempts(self.d, r.stdout.strip())
        self.assertEqual([x["outcome"] for x in a], ["retry", "retry", "accepted"])
        self.assertEqual(a[0]["errorClass"], "throttled")

    def test_undeliverable_without_fallback_fails(self):
        number = "+4915112340007"
        self.control_set({number: [131026]})
        r = self.d.cli("send", "--app", "shop", "--to", number)
        self.assertEqual(r.returncode, 6, r.stderr)
        self.assertNotIn("15112340007", r.stderr)

    def test_undeliverable_falls_back_to_email(self):
        number = "+4915112340008"
        self.control_set({number: [131026]})
        r = self.d.cli("--json", "send", "--app", "shop", "--to", number, "--fallback-email", "fallback@example.org")
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        out = json.loads(r.stdout)
        rid = out["request"]["id"]
        self.assertEqual(out["request"]["channel"], "email")
        a = attempts(self.d, rid)
        self.assertEqual([(x["channel"], x["outcome"]) for x in a], [("whatsapp", "failed"), ("email", "accepted")])
        self.assertEqual(a[0]["errorClass"], "undeliverable")
        msg = self.d.message_for(rid)
        self.assertIn("To: fallback@example.org", msg)
        # The same code went both ways.
        self.assertEqual(self.d.code_for(rid), self.code_in(self.graph_requests(number)[0]))
        st = json.loads(self.d.cli("--json", "status", rid).stdout)
        self.assertEqual(st["channel"], "email")
        self.assertTrue(st["fellBack"])
        self.assertNotIn("fallback@example.org", st["fallbackDestination"])  # masked
        self.assertTrue(st["fallbackDestination"].endswith("@example.org"))
        self.assertNotIn("15112340008", st["destination"])
        # Both channels, each with its own masked destination.
        text = self.d.cli("status", rid).stdout
        self.assertIn("whatsapp, then email (fallback)", text)
        self.assertIn("%s (whatsapp), %s (email)" % (st["destination"], st["fallbackDestination"]), text)
        self.assertEqual(self.d.cli("verify", "--id", rid, "--code", self.d.code_for(rid)).returncode, 0)

    def test_denied_country_refused(self):
        r = self.d.cli("send", "--app", "shop", "--to", "+74951234567")
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("RU", r.stderr)
        self.assertEqual(self.graph_requests("+74951234567"), [])

    def test_fallback_needs_whatsapp(self):
        r = self.d.cli("send", "--app", "shop", "--to", "a@example.org", "--fallback-email", "b@example.org")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    harness.main()

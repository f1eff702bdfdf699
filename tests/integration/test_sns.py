"""SES bounces and complaints through Amazon SNS, against the real twofactord:
messages signed by a CA and signing certificate this test makes (openssl),
with SignatureVersion 1 (SHA1withRSA) and 2 (SHA256withRSA), posted to the
webhook listener. A permanent bounce or a complaint suppresses the address and
later sends are refused (exit 5); a tampered body, a certificate URL off
sns.REGION.amazonaws.com, an untrusted certificate or an unknown topic are
refused and store nothing; a subscription is confirmed (on the test's
loopback server) only for a configured topic; a transient bounce is only
logged. Also: `twofactor suppression list|add|remove` and its roles, GDPR
export and erasure of an entry, and the rates `twofactor stats` shows."""
import base64
import http.server
import json
import os
import re
import shutil
import subprocess
import time
import tempfile
import threading
import unittest
import urllib.error
import urllib.request

import harness
from test_email import private, wait_for

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
OTHER_TOPIC = "arn:aws:sns:eu-west-1:123456789012:someone-else"
CERT_NAME = "SimpleNotificationService-0000000000000000000000000000test.pem"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/" + CERT_NAME
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

[webhook]
enabled = true
listen = "127.0.0.1"
port = 0
path = "/whatsapp"
verify_token_file = "{root}/wa-verify"
app_secret_file = "{root}/wa-secret"

[ses.notifications]
enabled = true
path = "/sns/ses"
topic_arns = ["TOPIC"]
certificate_dir = "{root}/sns-certs"
ca_file = "{root}/ca.pem"
subscribe_url_base = "http://127.0.0.1:CONFIRM_PORT"

[apps.shop]
[apps.shop.rate_limits]
resend_cooldown = 0
[apps.news]
[apps.news.rate_limits]
resend_cooldown = 0
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def sns_time(offset=0):
    """A Timestamp as SNS writes it, `offset` seconds from now."""
    t = time.time() + offset
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


class Confirmations(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):
        Confirmations.seen.append(self.path)
        body = b"<ConfirmSubscriptionResponse/>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Sns(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="twofactor-sns-")
        t = cls.tmp
        # A CA, and a signing certificate it issued; another self-signed one it did not.
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
                "-subj", "/CN=Test SNS CA", cwd=t)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "signer.key", "-out", "signer.csr",
                "-subj", "/CN=sns.amazonaws.com", cwd=t)
        openssl("x509", "-req", "-in", "signer.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "signer.pem", "-days", "30", cwd=t)
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out", "rogue.pem",
                "-days", "30", "-subj", "/CN=sns.amazonaws.com", cwd=t)
        cls.confirm = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Confirmations)
        threading.Thread(target=cls.confirm.serve_forever, daemon=True).start()
        config = CONFIG.replace("TOPIC", TOPIC).replace("CONFIRM_PORT", str(cls.confirm.server_address[1]))
        d = cls.d = harness.Daemon(config=config)
        private(os.path.join(d.root, "wa-verify"), "verify-token\n")
        private(os.path.join(d.root, "wa-secret"), "app-secret\n")
        os.makedirs(os.path.join(d.root, "sns-certs"))
        shutil.copy(os.path.join(t, "signer.pem"), os.path.join(d.root, "sns-certs", CERT_NAME))
        shutil.copy(os.path.join(t, "rogue.pem"), os.path.join(d.root, "sns-certs", "SimpleNotificationService-rogue.pem"))
        shutil.copy(os.path.join(t, "ca.pem"), os.path.join(d.root, "ca.pem"))
        d.start()
        m = wait_for(lambda: re.search(r"webhook: listening on 127\.0\.0\.1:(\d+)/whatsapp", d.read_log()), 10)
        cls.url = "http://127.0.0.1:%s/sns/ses" % m.group(1)
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        cls.confirm.shutdown()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # --- SNS messages, signed as SNS signs them ---
    def sign(self, msg, version="1", key="signer.key"):
        keys = ["Message", "MessageId"]
        if msg["Type"] == "Notification":
            keys += ["Subject"] if "Subject" in msg else []
            keys += ["Timestamp", "TopicArn", "Type"]
        else:
            keys += ["SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        text = "".join("%s\n%s\n" % (k, msg[k]) for k in keys)
        path = os.path.join(self.tmp, "canonical")
        with open(path, "w") as f:
            f.write(text)
        digest = "-sha1" if version == "1" else "-sha256"
        sig = subprocess.run(["openssl", "dgst", digest, "-sign", os.path.join(self.tmp, key), path],
                             check=True, capture_output=True).stdout
        msg["SignatureVersion"] = version
        msg["Signature"] = base64.b64encode(sig).decode()
        return msg

    def envelope(self, message, topic=TOPIC, cert_url=CERT_URL):
        Sns.n += 1
        return {"Type": "Notification", "MessageId": "msg-%d" % Sns.n, "TopicArn": topic,
                "Message": json.dumps(message), "Timestamp": sns_time(),
                "SigningCertURL": cert_url, "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe"}

    def post(self, msg):
        req = urllib.request.Request(self.url, data=json.dumps(msg).encode(), method="POST",
                                     headers={"Content-Type": "text/plain; charset=UTF-8",
                                              "x-amz-sns-message-type": msg["Type"]})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    @staticmethod
    def bounce(address, message_id, kind="Permanent", sub="General"):
        return {"notificationType": "Bounce",
                "bounce": {"bounceType": kind, "bounceSubType": sub, "timestamp": "2026-12-01T12:00:00.000Z",
                           "feedbackId": "fb-1", "bouncedRecipients": [{"emailAddress": address}]},
                "mail": {"messageId": message_id, "source": "no-reply@example.com", "destination": [address]}}

    @staticmethod
    def complaint(address, message_id):
        return {"notificationType": "Complaint",
                "complaint": {"complaintFeedbackType": "abuse", "timestamp": "2026-12-01T12:00:00.000Z",
                              "complainedRecipients": [{"emailAddress": address}]},
                "mail": {"messageId": message_id, "source": "no-reply@example.com", "destination": [address]}}

    # --- the daemon ---
    def send(self, address, app="shop"):
        r = self.d.cli("--json", "send", "--app", app, "--to", address)
        return r

    def message_id(self, address, app="shop"):
        r = self.send(address, app)
        self.assertEqual(r.returncode, 0, r.stderr)
        rid = json.loads(r.stdout)["request"]["id"]
        [attempt] = [json.loads(l) for l in self.d.cli("--json", "deliveries", rid).stdout.splitlines()]
        return attempt["providerMessageId"]

    def suppressions(self):
        r = self.d.cli("--json", "suppression", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(l) for l in r.stdout.splitlines()]

    def assertRefused(self, address, app="shop"):
        r = self.send(address, app)
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("suppressed", r.stderr)

    # --- the cases ---
    def test_permanent_bounce_v1_suppresses_and_later_sends_are_refused(self):
        mid = self.message_id("Bounced.User@example.org")
        before = len(self.suppressions())
        status, _ = self.post(self.sign(self.envelope(self.bounce("Bounced.User@example.org", mid)), "1"))
        self.assertEqual(status, 200)
        entries = self.suppressions()
        self.assertEqual(len(entries), before + 1)
        e = entries[-1]
        self.assertEqual((e["reason"], e["source"], e["messageId"], e["detail"]),
                         ("bounce", "sns", mid, "Permanent/General"))
        self.assertNotIn("bounced.user", json.dumps(entries).lower())
        # The match form: another case of the local part is the same mailbox.
        self.assertRefused("bounced.user@example.org")
        self.assertRefused("Bounced.User@example.org", "news")
        # The list shows a hash prefix, the reason and the date; never the address.
        r = self.d.cli("suppression", "list")
        self.assertIn(e["addressHash"][:12] + "…", r.stdout)
        self.assertNotIn("@", r.stdout)

    def test_complaint_v2_suppresses(self):
        mid = self.message_id("complainer@example.org")
        status, _ = self.post(self.sign(self.envelope(self.complaint("complainer@example.org", mid)), "2"))
        self.assertEqual(status, 200)
        self.assertEqual(self.suppressions()[-1]["reason"], "complaint")
        self.assertRefused("complainer@example.org")

    def test_forged_messages_are_refused_and_store_nothing(self):
        mid = self.message_id("forged@example.org")
        before = self.suppressions()
        # The body changed after signing.
        msg = self.sign(self.envelope(self.bounce("someone@example.org", mid)))
        msg["Message"] = json.dumps(self.bounce("forged@example.org", mid))
        self.assertEqual(self.post(msg)[0], 403)
        # Signed, but the certificate URL is not SNS's (the file is there under that name).
        msg = self.sign(self.envelope(self.bounce("forged@example.org", mid),
                                      cert_url="https://sns.eu-west-1.amazonaws.com.evil.example/" + CERT_NAME))
        self.assertEqual(self.post(msg)[0], 403)
        msg = self.sign(self.envelope(self.bounce("forged@example.org", mid),
                                      cert_url="http://sns.eu-west-1.amazonaws.com/" + CERT_NAME))
        self.assertEqual(self.post(msg)[0], 403)
        # A certificate the configured CA did not issue.
        msg = self.sign(self.envelope(self.bounce("forged@example.org", mid),
                                      cert_url="https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-rogue.pem"),
                        key="rogue.key")
        self.assertEqual(self.post(msg)[0], 403)
        # Validly signed, but of a topic not configured.
        msg = self.sign(self.envelope(self.bounce("forged@example.org", mid), topic=OTHER_TOPIC))
        self.assertEqual(self.post(msg)[0], 403)
        # Signature version 3 does not exist; neither does an unsigned message.
        msg = self.sign(self.envelope(self.bounce("forged@example.org", mid)))
        msg["SignatureVersion"] = "3"
        self.assertEqual(self.post(msg)[0], 403)
        self.assertEqual(self.post({"Type": "Notification"})[0], 400)
        # Validly signed, but recorded long ago (or dated ahead): a replay is refused.
        for offset in (-2 * 3600, 3600):
            msg = self.envelope(self.bounce("forged@example.org", mid))
            msg["Timestamp"] = sns_time(offset)
            status, body = self.post(self.sign(msg))
            self.assertEqual((status, body.strip()), (403, "stale message"))
        msg = self.envelope(self.bounce("forged@example.org", mid))
        msg["Timestamp"] = "yesterday"
        self.assertEqual(self.post(self.sign(msg))[0], 403)
        self.assertEqual(self.suppressions(), before)
        self.assertEqual(self.send("forged@example.org").returncode, 0)
        log = self.d.read_log()
        self.assertIn("bad signature", log)
        self.assertIn("unknown topic " + OTHER_TOPIC, log)
        self.assertIn("is more than an hour old (a replay", log)
        self.assertIn("is in the future", log)

    def test_subscription_confirmed_only_for_a_configured_topic(self):
        def confirmation(topic, token):
            return self.sign({"Type": "SubscriptionConfirmation", "MessageId": "sub-" + token, "Token": token,
                              "TopicArn": topic, "Message": "You have chosen to subscribe to the topic " + topic,
                              "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
                                              "&TopicArn=" + topic + "&Token=" + token,
                              "Timestamp": sns_time(), "SigningCertURL": CERT_URL}, "2")

        self.assertEqual(self.post(confirmation(OTHER_TOPIC, "tok-other"))[0], 403)
        self.assertFalse([p for p in Confirmations.seen if "tok-other" in p])
        # SubscribeURL must be on the topic's region's SNS host.
        msg = confirmation(TOPIC, "tok-evil")
        msg["SubscribeURL"] = "https://evil.example/?Action=ConfirmSubscription&Token=tok-evil"
        self.sign(msg, "2")
        self.assertEqual(self.post(msg)[0], 403)
        self.assertFalse([p for p in Confirmations.seen if "tok-evil" in p])
        status, _ = self.post(confirmation(TOPIC, "tok-good"))
        self.assertEqual(status, 200)
        self.assertEqual([p for p in Confirmations.seen if "tok-good" in p],
                         ["/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=tok-good"])

    def test_transient_bounce_is_only_logged(self):
        mid = self.message_id("mailbox.full@example.org")
        before = self.suppressions()
        status, _ = self.post(self.sign(self.envelope(self.bounce("mailbox.full@example.org", mid, "Transient",
                                                                  "MailboxFull"))))
        self.assertEqual(status, 200)
        self.assertEqual(self.suppressions(), before)
        self.assertEqual(self.send("mailbox.full@example.org").returncode, 0)
        self.assertTrue(wait_for(lambda: "transient bounce (Transient/MailboxFull)" in self.d.read_log(), 5))
        self.assertNotIn("mailbox.full@example.org", self.d.read_log())

    def test_stats_show_rates_and_warn_near_the_pause_thresholds(self):
        # news: 4 sends, 1 permanent bounce, 1 complaint: far above both thresholds.
        mids = [self.message_id("reader%d@example.org" % i, "news") for i in range(4)]
        self.assertEqual(self.post(self.sign(self.envelope(self.bounce("reader0@example.org", mids[0]))))[0], 200)
        self.assertEqual(self.post(self.sign(self.envelope(self.complaint("reader1@example.org", mids[1]))))[0], 200)
        r = self.d.cli("--json", "stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        news = [a for a in json.loads(r.stdout)["emailFeedback"] if a["app"] == "news"][0]
        day = news["last24h"]
        self.assertEqual((day["sends"], day["bounces"], day["complaints"]), (4, 1, 1))
        self.assertAlmostEqual(day["bounceRate"], 0.25)
        self.assertAlmostEqual(day["complaintRate"], 0.25)
        self.assertEqual(news["last7d"]["sends"], 4)
        self.assertTrue(any("bounce rate 25.00% over 24 h is above the 5.00%" in w for w in news["warnings"]))
        self.assertTrue(any("complaint rate" in w for w in news["warnings"]))
        text = self.d.cli("stats").stdout
        self.assertIn("email feedback", text)
        self.assertIn("4 sent, 1 bounced (25.00%), 1 complained (25.00%)", text)
        self.assertIn("warning: app news: bounce rate", text)

    def test_cli_add_remove_and_roles(self):
        d = self.d
        r = d.cli("suppression", "add", "manual@example.org", "--reason", "asked by phone", user=OPERATOR)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("suppressed", r.stdout)
        r = d.cli("suppression", "add", "Manual@example.org", "--reason", "again", user=OPERATOR)
        self.assertIn("already suppressed", r.stdout)
        self.assertEqual(self.suppressions()[-1]["detail"], "asked by phone")
        self.assertRefused("manual@example.org")
        r = d.cli("suppression", "remove", "manual@example.org", user=OPERATOR)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertRefused("manual@example.org")
        r = d.cli("suppression", "remove", "manual@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.send("manual@example.org").returncode, 0)
        r = d.cli("suppression", "remove", "manual@example.org")
        self.assertEqual(r.returncode, 7)
        r = d.cli("suppression", "add", "+4915112345678", "--reason", "x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("email addresses", r.stderr)
        r = d.cli("suppression", "list", user=DPO)
        self.assertEqual(r.returncode, 4)
        audit = [json.loads(l) for l in d.cli("--json", "audit", "list").stdout.splitlines()]
        events = [(a["event"], a["outcome"]) for a in audit if a["event"].startswith("suppression-")]
        self.assertIn(("suppression-add", "success"), events)
        self.assertIn(("suppression-remove", "success"), events)

    def test_gdpr_export_and_erasure_cover_the_entry(self):
        d = self.d
        mid = self.message_id("gdpr.bounce@example.org")
        self.assertEqual(self.post(self.sign(self.envelope(self.bounce("gdpr.bounce@example.org", mid))))[0], 200)
        r = d.cli("gdpr", "export", "--subject", "GDPR.Bounce@example.org", user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        entry = json.loads(r.stdout)["data"]["emailSuppression"]
        self.assertEqual((entry["reason"], entry["source"]), ("bounce", "sns"))
        r = d.cli("--json", "gdpr", "delete", "--subject", "gdpr.bounce@example.org", user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["suppressions"], 1)
        r = d.cli("gdpr", "export", "--subject", "gdpr.bounce@example.org", user=DPO)
        self.assertIsNone(json.loads(r.stdout)["data"]["emailSuppression"])
        self.assertEqual(self.send("gdpr.bounce@example.org").returncode, 0)


class SnsConfig(unittest.TestCase):
    def check(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        try:
            return subprocess.run([harness.TWOFACTORD, "--check-config", "--config", f.name], capture_output=True,
                                  text=True, timeout=60)
        finally:
            os.unlink(f.name)

    def test_bad_sections_are_refused_by_name(self):
        webhook = '[webhook]\nenabled = true\nverify_token_file = "/etc/v"\napp_secret_file = "/etc/s"\n'
        cases = [
            ('[ses.notifications]\nenabled = true\ntopic_arns = ["%s"]\ncertificate_dir = "/tmp"\n' % TOPIC,
             "needs [webhook] enabled = true"),
            (webhook + '[ses.notifications]\nenabled = true\ntopic_arns = ["not-an-arn"]\ncertificate_dir = "/tmp"\n',
             '"not-an-arn" is not an SNS topic ARN'),
            (webhook + '[ses.notifications]\nenabled = true\ncertificate_dir = "/tmp"\n',
             "ses.notifications.topic_arns: is required"),
            (webhook + '[ses.notifications]\nenabled = true\ntopic_arns = ["%s"]\n' % TOPIC,
             "ses.notifications.certificate_file: or certificate_dir is required"),
            (webhook + '[ses.notifications]\nenabled = true\ntopic_arns = ["%s"]\nfetch_certificates = true\n' % TOPIC,
             "ses.notifications.certificate_dir: is required by fetch_certificates"),
            (webhook + '[ses.notifications]\nenabled = true\npath = "/whatsapp"\ntopic_arns = ["%s"]\n'
                       'certificate_dir = "/tmp"\n' % TOPIC, "must differ from webhook.path"),
            ('[ses.notifications]\nfetch = true\n', "ses.notifications.fetch: unknown key"),
        ]
        for text, message in cases:
            r = self.check(text + "[apps.shop]\n")
            self.assertEqual(r.returncode, 2, text + r.stderr)
            self.assertIn(message, r.stderr)


if __name__ == "__main__":
    harness.main()

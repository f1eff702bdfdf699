"""Email end to end: the real twofactord delivering through SES (a loopback mock
that re-signs every request with botocore) and through an SMTP relay (aiosmtpd
with STARTTLS on a certificate made here), retries and the delivery log."""
import email
import email.policy
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import harness

SRC = os.environ["TWOFACTOR_SOURCE_DIR"]
PY = "/usr/bin/python3"


def start_mock(args, port_file, timeout=20):
    proc = subprocess.Popen([PY] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("mock exited: " + proc.stderr.read().decode())
        if os.path.exists(port_file) and open(port_file).read().strip():
            return proc, int(open(port_file).read().strip())
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mock did not start")


def stop_mock(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def private(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def attempts(d, rid):
    r = d.cli("--json", "deliveries", rid)
    return [json.loads(line) for line in r.stdout.splitlines()]


def wait_for(predicate, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


SES_CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[delivery]
email = "ses"
whatsapp = "outbox"

[ses]
region = "eu-west-1"
endpoint = "http://127.0.0.1:PORT"
from = "Shop <no-reply@shop.example>"
configuration_set = "otp-set"
access_key_id_file = "{root}/aws-id"
secret_access_key_file = "{root}/aws-secret"
timeout = 1

[retry]
max_attempts = 3
base_delay_ms = 50
max_delay_ms = 200
send_wait = 20

[apps.shop]
display_name = "Shop"
channels = ["email"]
"""


class Ses(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="twofactor-ses-")
        creds = os.path.join(cls.tmp, "creds.json")
        with open(creds, "w") as f:
            json.dump([{"accessKeyId": "AKIDTWOFACTOR", "secretAccessKey": "s3cr3t/Key+Example"}], f)
        cls.log = os.path.join(cls.tmp, "requests.jsonl")
        port_file = os.path.join(cls.tmp, "port")
        cls.mock, port = start_mock([os.path.join(SRC, "tests/mock/ses_server.py"), "--port-file", port_file,
                                     "--log", cls.log, "--credentials", creds, "--slow-seconds", "3"], port_file)
        cls.d = harness.Daemon(config=SES_CONFIG.replace("PORT", str(port)))
        private(os.path.join(cls.d.root, "aws-id"), "AKIDTWOFACTOR\n")
        private(os.path.join(cls.d.root, "aws-secret"), "s3cr3t/Key+Example\n")
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        stop_mock(cls.mock)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def requests_for(self, address):
        out = []
        if os.path.exists(self.log):
            for line in open(self.log):
                entry = json.loads(line)
                if address in json.dumps((entry.get("json") or {}).get("Destination", {})):
                    out.append(entry)
        return out

    def code_in(self, entry):
        text = entry["json"]["Content"]["Simple"]["Body"]["Text"]["Data"]
        return re.search(r"\b(\d{6})\b", text).group(1)

    def test_send_is_signed_accepted_and_verifies(self):
        r = self.d.cli("send", "--app", "shop", "--to", "alice@example.org", "--purpose", "verify")
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        rid = r.stdout.strip()
        [req] = self.requests_for("alice@example.org")
        self.assertEqual(req["status"], 200)
        body = req["json"]
        self.assertEqual(body["FromEmailAddress"], "Shop <no-reply@shop.example>")
        self.assertEqual(body["ConfigurationSetName"], "otp-set")
        simple = body["Content"]["Simple"]
        self.assertEqual(simple["Subject"]["Charset"], "UTF-8")
        code = self.code_in(req)
        self.assertIn(code, simple["Body"]["Html"]["Data"])
        self.assertNotIn(code, simple["Subject"]["Data"])
        self.assertNotIn("alice", json.dumps(body.get("EmailTags", [])))
        [a] = attempts(self.d, rid)
        self.assertEqual((a["driver"], a["outcome"], a["statusCode"]), ("ses", "accepted", 200))
        self.assertTrue(a["providerMessageId"])
        self.assertEqual(self.d.cli("verify", "--id", rid, "--code", code).returncode, 0)

    def test_throttling_is_retried(self):
        r = self.d.cli("send", "--app", "shop", "--to", "throttle-2@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        rid = r.stdout.strip()
        a = attempts(self.d, rid)
        self.assertEqual([x["outcome"] for x in a], ["retry", "retry", "accepted"])
        self.assertEqual(a[0]["statusCode"], 429)
        self.assertEqual(a[0]["errorClass"], "throttled")
        reqs = self.requests_for("throttle-2@example.org")
        self.assertEqual(len(reqs), 3)
        # A retry resends the same message: the same code, not a new one.
        self.assertEqual(len({self.code_in(q) for q in reqs}), 1)

    def test_permanent_rejection_fails_the_request(self):
        r = self.d.cli("send", "--app", "shop", "--to", "reject@example.org")
        self.assertEqual(r.returncode, 6, r.stderr)
        self.assertIn("MessageRejected", r.stderr)
        self.assertNotIn("reject@example.org", r.stderr)  # the provider's text names it; ours does not
        rid = re.search(r"request ([a-z2-7]{26})", r.stderr).group(1)
        self.assertEqual(json.loads(self.d.cli("--json", "status", rid).stdout)["status"], "failed")
        [a] = attempts(self.d, rid)
        self.assertEqual((a["outcome"], a["errorClass"], a["statusCode"]), ("failed", "rejected", 400))
        self.assertEqual(len(self.requests_for("reject@example.org")), 1)

    def test_server_errors_retried_then_accepted(self):
        r = self.d.cli("send", "--app", "shop", "--to", "fail500-1@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        a = attempts(self.d, r.stdout.strip())
        self.assertEqual([(x["outcome"], x.get("statusCode")) for x in a], [("retry", 500), ("accepted", 200)])

    def test_timeout_is_ambiguous_and_logged(self):
        r = self.d.cli("--json", "send", "--app", "shop", "--to", "slow+timeout@example.org", "--no-wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        rid = json.loads(r.stdout)["request"]["id"]
        a = wait_for(lambda: [x for x in attempts(self.d, rid) if x["outcome"] == "failed"], 30)
        self.assertTrue(a, attempts(self.d, rid))
        log = attempts(self.d, rid)
        self.assertEqual(len(log), 3)
        self.assertTrue(all(x["errorClass"] == "timeout" and x["ambiguous"] for x in log))
        self.assertIn("may deliver twice", self.d.read_log())

    def test_slow_provider_does_not_block_verify(self):
        r = self.d.cli("send", "--app", "shop", "--to", "bob@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        rid = r.stdout.strip()
        code = self.code_in(self.requests_for("bob@example.org")[0])
        # More slow deliveries than there are delivery threads.
        slow = []
        for i in range(20):  # distinct addresses: one address gets a send per 30 s at most
            out = self.d.cli("--json", "send", "--app", "shop", "--to", "slow+%d@example.org" % i, "--no-wait")
            slow.append(json.loads(out.stdout)["request"]["id"])
        r = self.d.cli("verify", "--id", rid, "--code", code)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"))
        # The slow ones were still in flight while the verify was answered.
        unfinished = [s for s in slow if not any(a["outcome"] == "failed" for a in attempts(self.d, s))]
        self.assertGreater(len(unfinished), 0)

    def test_account_suspended_is_final(self):
        r = self.d.cli("send", "--app", "shop", "--to", "suspended@example.org")
        self.assertEqual(r.returncode, 6)
        self.assertIn("AccountSuspended", r.stderr)

    def test_credentials_never_logged(self):
        self.d.cli("send", "--app", "shop", "--to", "quiet@example.org")
        log = self.d.read_log()
        self.assertNotIn("s3cr3t", log)
        self.assertNotIn("quiet@example.org", log)


SMTP_CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[delivery]
email = "smtp"

[smtp]
url = "smtp://127.0.0.1:PORT"
from = "Bücher & Co <otp@books.example>"
timeout = 5

[tls]
ca_bundle = "CA"

[retry]
max_attempts = 2
base_delay_ms = 50
max_delay_ms = 100

[apps.books]
display_name = "Bücher"
channels = ["email"]
"""


class Smtp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="twofactor-smtp-")
        t = cls.tmp
        run = lambda cmd: subprocess.run(cmd, shell=True, check=True, capture_output=True)
        run(f"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout {t}/ca.key -out {t}/ca.pem")
        run(f"openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout {t}/server.key -out {t}/server.csr")
        with open(f"{t}/ext", "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run(f"openssl x509 -req -days 2 -in {t}/server.csr -CA {t}/ca.pem -CAkey {t}/ca.key -CAcreateserial "
            f"-extfile {t}/ext -out {t}/server.pem")
        cls.maildir = os.path.join(t, "mail")
        os.makedirs(cls.maildir)
        port_file = os.path.join(t, "port")
        cls.mock, port = start_mock([os.path.join(SRC, "tests/mock/smtp_server.py"), "--port-file", port_file,
                                     "--maildir", cls.maildir, "--cert", f"{t}/server.pem", "--key",
                                     f"{t}/server.key"], port_file)
        cls.d = harness.Daemon(config=SMTP_CONFIG.replace("PORT", str(port)).replace('"CA"', '"%s/ca.pem"' % t))
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        stop_mock(cls.mock)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def stored(self, address):
        out = []
        for path in sorted(glob.glob(os.path.join(self.maildir, "*.eml"))):
            with open(path, "rb") as f:
                msg = email.message_from_bytes(f.read(), policy=email.policy.default)
            if address in str(msg["To"]):
                out.append(msg)
        return out

    def test_send_over_starttls_and_verify(self):
        r = self.d.cli("send", "--app", "books", "--to", "reader@example.org", "--locale", "de")
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        rid = r.stdout.strip()
        [msg] = self.stored("reader@example.org")
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        self.assertEqual(msg["Subject"], "Ihr Anmeldecode für Bücher")  # de, purpose login
        self.assertEqual(msg["Auto-Submitted"], "auto-generated")
        self.assertTrue(msg["Message-ID"].endswith("@books.example>"))
        self.assertIn("otp@books.example", msg["From"])
        parts = {p.get_content_type(): p.get_content() for p in msg.walk() if not p.is_multipart()}
        code = re.search(r"\b(\d{6})\b", parts["text/plain"]).group(1)
        self.assertIn(code, parts["text/html"])
        [a] = attempts(self.d, rid)
        self.assertEqual((a["driver"], a["outcome"], a["statusCode"]), ("smtp", "accepted", 250))
        self.assertEqual(a["providerMessageId"], msg["Message-ID"])
        self.assertEqual(self.d.cli("verify", "--id", rid, "--code", code).returncode, 0)

    def test_temporary_failure_retried_then_failed(self):
        r = self.d.cli("send", "--app", "books", "--to", "tempfail@example.org")
        self.assertEqual(r.returncode, 6, r.stderr)
        rid = re.search(r"request ([a-z2-7]{26})", r.stderr).group(1)
        a = attempts(self.d, rid)
        self.assertEqual([(x["outcome"], x["statusCode"]) for x in a], [("retry", 451), ("failed", 451)])

    def test_rejected_recipient_is_final(self):
        r = self.d.cli("send", "--app", "books", "--to", "reject@example.org")
        self.assertEqual(r.returncode, 6, r.stderr)
        rid = re.search(r"request ([a-z2-7]{26})", r.stderr).group(1)
        [a] = attempts(self.d, rid)
        self.assertEqual((a["outcome"], a["statusCode"], a["errorClass"]), ("failed", 550, "rejected"))


class Misconfigured(unittest.TestCase):
    def test_ses_without_credentials_refuses_to_start(self):
        d = harness.Daemon(config=SES_CONFIG.replace("PORT", "9"))
        try:
            with self.assertRaises(RuntimeError) as ctx:
                d.start(timeout=10)
            self.assertIn("aws-id does not exist", str(ctx.exception))
        finally:
            d.cleanup()


if __name__ == "__main__":
    harness.main()

"""Outgoing event webhooks end to end: a test HTTPS server (its certificate
from a CA this test makes) receives the events, checks their Standard Webhooks
signature independently with Python's hmac, and finds neither a code nor a
full address in them; a failing endpoint is retried, each attempt shown by
`twofactor events deliveries`, and disabled after max_failures; an event
not delivered within retry_for is given up; a request whose delivery failed
is told as delivery.failed; a restart still delivers what was queued; a
certificate from the wrong CA is a failure."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import ssl
import threading
import unittest

import harness
from test_email import wait_for
from test_http import make_tls

T0 = 1_800_000_000
SECRET = b"0123456789abcdef0123456789abcdef"

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[delivery]
email = "outbox"

[apps.shop]
display_name = "Shop"
channels = ["email"]
max_attempts = 2

[apps.shop.rate_limits]
resend_cooldown = 0

[apps.shop.events]
url = "https://127.0.0.1:{{port}}/shop"
secret_file = "{root}/whsec"
ca_file = "{root}/tls/ca.pem"
events = ["verification.approved", "verification.failed", "verification.expired", "verification.canceled",
          "delivery.failed"]

[apps.flaky]
display_name = "Flaky"
channels = ["email"]

[apps.flaky.events]
url = "https://127.0.0.1:{{port}}/flaky"
secret_file = "{root}/whsec"
ca_file = "{root}/tls/ca.pem"
events = ["verification.canceled"]
max_failures = 3
retry_base = 1

[apps.giveup]
display_name = "Give up"
channels = ["email"]

[apps.giveup.events]
url = "https://127.0.0.1:{{port}}/giveup"
secret_file = "{root}/whsec"
ca_file = "{root}/tls/ca.pem"
events = ["verification.canceled"]
max_failures = 50
retry_base = 40
retry_for = 60

[apps.wrongca]
display_name = "Wrong CA"
channels = ["email"]

[apps.wrongca.events]
url = "https://127.0.0.1:{{port}}/wrongca"
secret_file = "{root}/whsec"
ca_file = "{root}/other-ca/ca.pem"
events = ["verification.canceled"]
retry_base = 1
"""


class Receiver(http.server.ThreadingHTTPServer):
    """An HTTPS endpoint that records what it gets and answers each path with
    the status set for it (204 unless told otherwise)."""

    daemon_threads = True

    def __init__(self, tls_dir):
        super().__init__(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(tls_dir, "server.pem"), os.path.join(tls_dir, "server.key"))
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.received = []  # (path, headers, body)
        self.status = {}

    def handle_error(self, request, client_address):
        pass  # a client refusing our certificate is expected in one test


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.received.append((self.path, dict(self.headers), body))
            status = self.server.status.get(self.path, 204)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def signature_ok(headers, body):
    """The Standard Webhooks check, written from the convention, not from our code."""
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    expected = base64.b64encode(hmac.new(SECRET, b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body),
                                         hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ") if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, g) for g in given)


class Events(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG, clock=T0)
        make_tls(os.path.join(cls.d.root, "tls"))
        make_tls(os.path.join(cls.d.root, "other-ca"))
        with open(os.path.join(cls.d.root, "whsec"), "w") as f:
            f.write("whsec_" + base64.b64encode(SECRET).decode() + "\n")
        os.chmod(os.path.join(cls.d.root, "whsec"), 0o600)
        cls.rx = Receiver(os.path.join(cls.d.root, "tls"))
        threading.Thread(target=cls.rx.serve_forever, daemon=True).start()
        with open(cls.d.config_path) as f:
            text = f.read().replace("{port}", str(cls.rx.server_address[1]))
        with open(cls.d.config_path, "w") as f:
            f.write(text)
        cls.now = T0
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        cls.rx.shutdown()

    def advance(self, seconds):
        type(self).now += seconds
        self.d.set_clock(self.now)

    def events_for(self, request_id, path="/shop"):
        with self.rx.lock:
            got = list(self.rx.received)
        out = []
        for p, headers, body in got:
            if p != path:
                continue
            event = json.loads(body)
            if event["data"]["id"] == request_id:
                out.append((headers, body, event))
        return out

    def wait_event(self, request_id, type_, path="/shop"):
        found = wait_for(lambda: [e for e in self.events_for(request_id, path) if e[2]["type"] == type_], 15)
        self.assertTrue(found, "no %s event for %s; log:\n%s" % (type_, request_id, self.d.read_log()[-3000:]))
        return found[0]

    def deliveries(self, *args):
        r = self.d.cli("--json", "events", "deliveries", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        return [x for x in lines if not x.get("endpoint")], [x for x in lines if x.get("endpoint")]

    def test_approved_failed_expired_signed_without_code_or_address(self):
        rid = self.d.send("events.alice@example.org", "shop")
        code = self.d.code_for(rid)
        wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
        self.assertNotEqual(self.d.cli("verify", "--id", rid, "--code", wrong).returncode, 0)
        self.assertEqual(self.d.cli("verify", "--id", rid, "--code", code).returncode, 0)
        failed = self.wait_event(rid, "verification.failed")
        approved = self.wait_event(rid, "verification.approved")
        for headers, body, event in (failed, approved):
            self.assertTrue(signature_ok(headers, body), headers)
            self.assertTrue(headers["webhook-id"].startswith("msg_"))
            self.assertEqual(headers["Content-Type"], "application/json")
            text = body.decode()
            self.assertNotIn(code, text)
            self.assertNotIn("events.alice@example.org", text)
            self.assertEqual(event["data"]["channel"], "email")
            self.assertIn("*", event["data"]["destination"])
        self.assertEqual(failed[2]["data"]["status"], "pending")
        self.assertEqual(failed[2]["data"]["attempts"], 1)
        self.assertEqual(approved[2]["data"]["status"], "approved")
        self.assertNotEqual(failed[0]["webhook-id"], approved[0]["webhook-id"])
        # A body changed in transit no longer matches its signature.
        self.assertFalse(signature_ok(approved[0], approved[1].replace(b"approved", b"canceled")))

        # Nobody asks after this one: the daemon finds it expired by itself.
        late = self.d.send("events.bob@example.org", "shop")
        self.advance(601)
        _, body, event = self.wait_event(late, "verification.expired")
        self.assertEqual(event["data"]["status"], "expired")
        self.assertNotIn("events.bob@example.org", body.decode())
        attempts, _ = self.deliveries("--app", "shop")
        delivered = [a for a in attempts if a["outcome"] == "delivered" and a["statusCode"] == 204]
        self.assertGreaterEqual(len(delivered), 3, attempts)

    def test_delivery_failed_event(self):
        # The outbox cannot take the message: the request fails, and the app hears so.
        new = os.path.join(self.d.state, "outbox", "new")
        os.rename(new, new + ".away")
        try:
            r = self.d.cli("send", "--app", "shop", "--to", "events.undeliverable@example.org")
        finally:
            os.rename(new + ".away", new)
        self.assertEqual(r.returncode, 6, r.stderr)
        rid = r.stderr.strip().rsplit("request ", 1)[1].rstrip(")")
        headers, body, event = self.wait_event(rid, "delivery.failed")
        self.assertTrue(signature_ok(headers, body))
        self.assertEqual(event["data"]["status"], "failed")
        self.assertEqual(event["data"]["channel"], "email")
        self.assertNotIn("events.undeliverable@example.org", body.decode())
        self.assertNotIn("undeliverable", body.decode())
        # Only the failure: the request was neither approved nor expired.
        self.assertEqual([e["type"] for _, _, e in self.events_for(rid)], ["delivery.failed"])

    def test_event_given_up_after_retry_for(self):
        with self.rx.lock:
            self.rx.status["/giveup"] = 500
        import time
        # Given up when the next try would fall past retry_for (60 s): the
        # second attempt's backoff (40..80 s after a 40 s base) does.
        rid = self.d.send("events.giveup@example.org", "giveup")
        self.assertEqual(self.d.cli("cancel", rid).returncode, 0)
        headers, _, _ = self.wait_event(rid, "verification.canceled", "/giveup")
        event_id = headers["webhook-id"]
        wait_for(lambda: len(self.deliveries("--event-id", event_id)[0]) >= 1, 15)
        self.advance(45)
        attempts = wait_for(lambda: len(self.deliveries("--event-id", event_id)[0]) >= 2 and
                            self.deliveries("--event-id", event_id)[0], 15)
        self.assertTrue(attempts, self.d.read_log()[-2000:])
        self.assertEqual([a["outcome"] for a in attempts], ["retry", "failed"])
        self.assertEqual([a.get("statusCode") for a in attempts], [500, 500])
        self.assertIn("given up after 2 attempt(s)", attempts[1]["error"])
        # Nothing more is tried, however long one waits.
        self.advance(7200)
        time.sleep(2.5)
        self.assertEqual(len(self.events_for(rid, "/giveup")), 2)
        self.assertEqual(len(self.deliveries("--event-id", event_id)[0]), 2)

        # An event whose retry falls due only after retry_for has passed (the
        # daemon's clock jumps, as after a long stop) is given up without a post.
        rid2 = self.d.send("events.giveup2@example.org", "giveup")
        self.assertEqual(self.d.cli("cancel", rid2).returncode, 0)
        headers, _, _ = self.wait_event(rid2, "verification.canceled", "/giveup")
        event_id2 = headers["webhook-id"]
        wait_for(lambda: len(self.deliveries("--event-id", event_id2)[0]) >= 1, 15)
        self.advance(120)
        attempts = wait_for(lambda: len(self.deliveries("--event-id", event_id2)[0]) >= 2 and
                            self.deliveries("--event-id", event_id2)[0], 15)
        self.assertTrue(attempts, self.d.read_log()[-2000:])
        self.assertEqual([a["outcome"] for a in attempts], ["retry", "failed"])
        self.assertNotIn("statusCode", attempts[1])
        self.assertIn("not delivered within retry_for (1 attempt(s), last: the endpoint answered HTTP 500)",
                      attempts[1]["error"])
        self.assertEqual(len(self.events_for(rid2, "/giveup")), 1)
        failed = self.deliveries("--app", "giveup", "--failed")[0]
        self.assertEqual({a["eventId"] for a in failed if a["outcome"] == "failed"} >= {event_id, event_id2}, True,
                         failed)

    def test_failing_endpoint_retried_logged_disabled_and_enabled(self):
        with self.rx.lock:
            self.rx.status["/flaky"] = 500
        rid = self.d.send("events.flaky@example.org", "flaky")
        self.assertEqual(self.d.cli("cancel", rid).returncode, 0)
        headers, _, _ = self.wait_event(rid, "verification.canceled", "/flaky")
        event_id = headers["webhook-id"]
        # Each retry is due after the backoff: move the daemon's clock on once
        # the attempt before is recorded (its retry time set from the clock).
        for n in (2, 3):
            wait_for(lambda: len(self.deliveries("--event-id", event_id)[0]) >= n - 1, 15)
            self.advance(120)
            wait_for(lambda: len(self.events_for(rid, "/flaky")) >= n, 15)
        self.assertEqual(len(self.events_for(rid, "/flaky")), 3)
        # The same event every time: one webhook-id, a fresh signature each try.
        self.assertEqual({h["webhook-id"] for h, _, _ in self.events_for(rid, "/flaky")}, {event_id})
        attempts = wait_for(lambda: len(self.deliveries("--event-id", event_id)[0]) >= 3 and
                            self.deliveries("--event-id", event_id)[0], 15)
        self.assertEqual([a["attempt"] for a in attempts], [1, 2, 3])
        self.assertEqual([a["statusCode"] for a in attempts], [500, 500, 500])
        self.assertEqual([a["outcome"] for a in attempts], ["retry", "retry", "disabled"])
        self.assertIn("HTTP 500", attempts[0]["error"])
        self.assertNotIn(base64.b64encode(SECRET).decode(), json.dumps(attempts))
        _, endpoints = self.deliveries("--app", "flaky")
        self.assertEqual(len(endpoints), 1)
        self.assertIn("disabledAt", endpoints[0])
        self.assertEqual(endpoints[0]["failures"], 3)
        self.assertIn("endpoint of app flaky is disabled after 3 consecutive failed attempts", self.d.read_log())
        human = self.d.cli("events", "deliveries", "--app", "flaky", "--failed")
        self.assertIn("DISABLED endpoint of app flaky", human.stdout)

        # Disabled: no more tries, however long one waits.
        self.advance(7200)
        rid2 = self.d.send("events.flaky2@example.org", "flaky")
        self.assertEqual(self.d.cli("cancel", rid2).returncode, 0)
        self.advance(120)
        import time
        time.sleep(2.5)
        self.assertEqual(len(self.events_for(rid, "/flaky")), 3)
        self.assertEqual(self.events_for(rid2, "/flaky"), [])

        with self.rx.lock:
            self.rx.status["/flaky"] = 200
        r = self.d.cli("events", "enable", "flaky")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("enabled", r.stdout)
        self.wait_event(rid, "verification.canceled", "/flaky")
        wait_for(lambda: len(self.events_for(rid, "/flaky")) == 4, 15)
        self.wait_event(rid2, "verification.canceled", "/flaky")
        attempts, endpoints = self.deliveries("--event-id", event_id)
        self.assertEqual(attempts[-1]["outcome"], "delivered")
        self.assertEqual(self.d.cli("events", "enable", "flaky").stdout.strip(),
                         "event endpoint of app flaky was not disabled")
        self.assertNotEqual(self.d.cli("events", "enable", "nosuchapp").returncode, 0)

    def test_wrong_ca_is_a_failure(self):
        rid = self.d.send("events.ca@example.org", "wrongca")
        self.assertEqual(self.d.cli("cancel", rid).returncode, 0)
        attempts = wait_for(lambda: self.deliveries("--app", "wrongca", "--failed")[0], 15)
        self.assertTrue(attempts, self.d.read_log()[-2000:])
        self.assertEqual(attempts[0]["outcome"], "retry")
        self.assertNotIn("statusCode", attempts[0])
        self.assertRegex(attempts[0]["error"].lower(), "certificate|ssl|tls")
        self.assertEqual(self.events_for(rid, "/wrongca"), [])

    def test_restart_delivers_queued_events(self):
        with self.rx.lock:
            self.rx.status["/shop"] = 503
        rid = self.d.send("events.restart@example.org", "shop")
        self.assertEqual(self.d.cli("cancel", rid).returncode, 0)
        headers, _, _ = self.wait_event(rid, "verification.canceled")
        wait_for(lambda: self.deliveries("--event-id", headers["webhook-id"])[0], 15)
        self.d.stop()
        with self.rx.lock:
            self.rx.status["/shop"] = 204
        self.d.start()
        self.advance(120)
        wait_for(lambda: len(self.events_for(rid)) >= 2, 15)
        got = self.events_for(rid)
        self.assertEqual(len(got), 2, self.d.read_log()[-2000:])
        self.assertEqual(got[0][0]["webhook-id"], got[1][0]["webhook-id"])
        self.assertTrue(signature_ok(got[1][0], got[1][1]))

    def test_unknown_event_type_is_a_config_error(self):
        bad = os.path.join(self.d.root, "bad.toml")
        with open(self.d.config_path) as f:
            text = f.read().replace('events = ["verification.canceled"]\nmax_failures',
                                    'events = ["verification.canceld"]\nmax_failures')
        with open(bad, "w") as f:
            f.write(text)
        r = harness.subprocess.run([harness.TWOFACTORD, "--config", bad, "--check-config"], capture_output=True,
                                   text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('unknown event type "verification.canceld"', r.stdout + r.stderr)
        self.assertIn("apps.flaky.events.events[0]", r.stdout + r.stderr)


if __name__ == "__main__":
    harness.main()

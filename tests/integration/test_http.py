"""The HTTPS API end to end, over real TLS 1.3 with a CA this test makes:
API keys (create, scopes, app, revoke, expiry), send -> outbox -> check,
problem+json errors, Idempotency-Key, the request log, and the listener's
limits (idle and slowloris clients, huge headers, duplicate Content-Length,
TLS 1.2 refused unless allowed); the certificate from systemd credentials,
reloaded on SIGHUP."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import harness
from test_email import wait_for

T0 = 1_800_000_000

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[delivery]
email = "outbox"

[http]
listen = ["127.0.0.1:0"]
cert_file = "{root}/tls/server.pem"
key_file = "{root}/tls/server.key"
header_timeout = 2
body_timeout = 4
idle_timeout = 2
max_header_bytes = 16384
max_connections_per_ip = 200
key_requests_per_minute = 100000

[apps.shop]
display_name = "Shop"
channels = ["email"]

[apps.shop.rate_limits]
resend_cooldown = 0

[apps.other]
display_name = "Other"
channels = ["email"]
"""


def make_tls(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    os.makedirs(directory, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "2", "-subj", "/CN=twofactor test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    os.chmod(os.path.join(directory, "server.key"), 0o600)
    return os.path.join(directory, "ca.pem")


class Http(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG, clock=T0)
        cls.ca = make_tls(os.path.join(cls.d.root, "tls"))
        cls.d.start()
        m = wait_for(lambda: re.search(r"https: listening on 127\.0\.0\.1:(\d+)", cls.d.read_log()), 10)
        cls.port = int(m.group(1))
        cls.full = cls.create_key("--app", "shop", "--scope", "send,verify,status,cancel")
        cls.verify_only = cls.create_key("--app", "shop", "--scope", "verify")
        cls.other = cls.create_key("--app", "other", "--scope", "send,verify,status,cancel")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    @classmethod
    def create_key(cls, *args):
        r = cls.d.cli("apikey", "create", *args)
        if r.returncode != 0:
            raise AssertionError("apikey create failed: " + r.stderr)
        return r.stdout.strip()

    def context(self, **kw):
        ctx = ssl.create_default_context(cafile=self.ca)
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def request(self, method, path, body=None, key=None, headers=None, conn=None):
        own = conn is None
        if own:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(), timeout=10)
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = "Bearer " + key
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        raw = r.read()
        if own:
            conn.close()
        ctype = r.getheader("Content-Type", "")
        parsed = json.loads(raw) if ctype.startswith("application/") and raw else raw
        return r.status, parsed, r

    def send(self, to="user@example.org", key=None, extra=None, headers=None):
        body = {"to": to}
        body.update(extra or {})
        return self.request("POST", "/v1/apps/shop/verifications", body, key or self.full, headers)

    # --- the API ---

    def test_send_check_status_over_tls13(self):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(), timeout=10)
        status, sent, _ = self.send(extra={"reference": "order-1", "clientIp": "198.51.100.7"})
        self.assertEqual(status, 201, sent)
        self.assertEqual(sent["status"], "pending")
        self.assertEqual(sent["channel"], "email")
        self.assertNotIn("user@example.org", json.dumps(sent))  # masked
        code = self.d.code_for(sent["id"])
        wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
        # Two calls on one kept-alive TLS connection.
        status, out, _ = self.request("POST", "/v1/apps/shop/verification-check", {"id": sent["id"], "code": wrong},
                                      self.full, conn=conn)
        self.assertEqual(status, 200)
        self.assertFalse(out["approved"])
        status, out, _ = self.request("POST", "/v1/apps/shop/verification-check", {"id": sent["id"], "code": code},
                                      self.full, conn=conn)
        self.assertEqual(status, 200)
        self.assertTrue(out["approved"])
        self.assertEqual(conn.sock.version(), "TLSv1.3")
        conn.close()
        status, out, _ = self.request("GET", "/v1/verifications/" + sent["id"], key=self.full)
        self.assertEqual((status, out["status"]), (200, "approved"))
        self.assertNotIn(code, json.dumps(out))

    def test_check_by_destination_and_cancel(self):
        _, sent, _ = self.send(to="bydest@example.org")
        code = self.d.code_for(sent["id"])
        status, out, _ = self.request("POST", "/v1/apps/shop/verification-check",
                                      {"to": "bydest@example.org", "code": code}, self.verify_only)
        self.assertEqual(status, 200, out)
        self.assertTrue(out["approved"])
        _, sent, _ = self.send(to="cancel@example.org")
        status, out, _ = self.request("POST", "/v1/verifications/%s/cancel" % sent["id"], key=self.full)
        self.assertEqual((status, out["status"]), (200, "canceled"))

    def test_resend_sends_a_new_code(self):
        _, sent, _ = self.send(to="resend@example.org")
        status, out, _ = self.request("POST", "/v1/verifications/%s/resend" % sent["id"], key=self.full)
        self.assertEqual(status, 200, out)
        self.assertEqual(out["sends"], 2)

    def assertProblem(self, result, status, error):
        got_status, body, r = result
        self.assertEqual(got_status, status, body)
        self.assertEqual(r.getheader("Content-Type"), "application/problem+json")
        self.assertEqual(body["status"], status)
        self.assertTrue(body["error"].endswith(error), body)
        self.assertEqual(body["type"], "urn:twofactor:error:" + body["error"])
        self.assertEqual(body["title"], error)
        return body

    def test_keys_and_scopes(self):
        self.assertProblem(self.send(key="tfk_not-a-key"), 401, "Unauthorized")
        r = self.request("POST", "/v1/apps/shop/verifications", {"to": "a@example.org"})
        self.assertEqual(self.assertProblem(r, 401, "Unauthorized") and r[2].getheader("WWW-Authenticate"), "Bearer")
        # A key with one character changed fails its checksum; another secret with the same id fails the hash.
        broken = self.full[:-1] + ("0" if self.full[-1] != "0" else "1")
        self.assertProblem(self.send(key=broken), 401, "Unauthorized")
        self.assertProblem(self.send(key=self.verify_only), 403, "Forbidden")
        self.assertProblem(self.request("POST", "/v1/apps/other/verifications", {"to": "a@example.org"}, self.full),
                           403, "Forbidden")
        # Another app's request is not this key's to see.
        _, sent, _ = self.request("POST", "/v1/apps/other/verifications", {"to": "o@example.org"}, self.other)
        self.assertProblem(self.request("GET", "/v1/verifications/" + sent["id"], key=self.full), 404, "NoSuchRequest")
        # Nor to check, cancel or resend: each is told there is no such request, and nothing changes.
        code = self.d.code_for(sent["id"])
        self.assertProblem(self.request("POST", "/v1/apps/shop/verification-check", {"id": sent["id"], "code": code},
                                        self.full), 404, "NoSuchRequest")
        self.assertProblem(self.request("POST", "/v1/verifications/%s/cancel" % sent["id"], key=self.full),
                           404, "NoSuchRequest")
        self.assertProblem(self.request("POST", "/v1/verifications/%s/resend" % sent["id"], key=self.full),
                           404, "NoSuchRequest")
        status, own, _ = self.request("GET", "/v1/verifications/" + sent["id"], key=self.other)
        self.assertEqual((status, own["status"], own["attempts"], own["sends"]), (200, "pending", 0, 1), own)

    def test_revoked_and_expired_keys(self):
        key = self.create_key("--app", "shop", "--scope", "status")
        self.assertProblem(self.request("GET", "/v1/verifications/nope", key=key), 404, "NoSuchRequest")
        key_id = key.split("_")[1]
        r = self.d.cli("apikey", "revoke", key_id)
        self.assertEqual(r.returncode, 0, r.stderr)
        body = self.assertProblem(self.request("GET", "/v1/verifications/nope", key=key), 401, "Unauthorized")
        self.assertIn("revoked", body["detail"])
        listed = self.d.cli("--json", "apikey", "list").stdout
        self.assertNotIn(key, listed)  # never the secret
        self.assertIn('"revokedAt"', [l for l in listed.splitlines() if key_id in l][0])

        expiring = self.create_key("--app", "shop", "--scope", "status", "--expires", str(T0 + 3600))
        self.assertProblem(self.request("GET", "/v1/verifications/nope", key=expiring), 404, "NoSuchRequest")
        self.d.set_clock(T0 + 3600)
        try:
            body = self.assertProblem(self.request("GET", "/v1/verifications/nope", key=expiring), 401,
                                      "Unauthorized")
            self.assertIn("expired", body["detail"])
        finally:
            self.d.set_clock(T0)

    def test_error_shapes(self):
        p = self.assertProblem(self.send(extra={"colour": "red"}), 400, "InvalidParameter")
        self.assertEqual(p["parameter"], "colour")
        p = self.assertProblem(self.send(extra={"ttl": "long"}), 400, "InvalidParameter")
        self.assertEqual(p["parameter"], "ttl")
        p = self.assertProblem(self.request("POST", "/v1/apps/shop/verifications", "{not json", self.full), 400,
                               "InvalidParameter")
        self.assertEqual(p["parameter"], "body")
        self.assertProblem(self.send(to="not an address"), 422, "InvalidDestination")
        r = self.d.cli("suppression", "add", "bounced@example.org", "--reason", "hard bounce")
        self.assertEqual(r.returncode, 0, r.stderr)
        p = self.assertProblem(self.send(to="Bounced@example.org"), 422, "Suppressed")
        self.assertNotIn("bounced@example.org", json.dumps(p).lower())  # the address is not echoed back
        p = self.assertProblem(self.send(extra={"length": 99}), 422, "OutOfRange")
        self.assertEqual(p["parameter"], "length")
        self.assertProblem(self.request("GET", "/v1/verifications/nope", key=self.full), 404, "NoSuchRequest")
        _, sent, _ = self.send(to="twice@example.org")
        self.request("POST", "/v1/verifications/%s/cancel" % sent["id"], key=self.full)
        self.assertProblem(self.request("POST", "/v1/verifications/%s/cancel" % sent["id"], key=self.full), 409,
                           "NotPending")
        status, _, _ = self.request("GET", "/v1/nothing", key=self.full)
        self.assertEqual(status, 404)
        status, _, r = self.request("DELETE", "/v1/verifications/x", key=self.full)
        self.assertEqual((status, r.getheader("Allow")), (405, "GET, HEAD"))

    def test_rate_limited_answer_has_retry_after(self):
        # Per-destination sends are capped by the app's limits: hit them.
        last = None
        for _ in range(30):
            last = self.send(to="flood@example.org")
            if last[0] == 429:
                break
        p = self.assertProblem(last, 429, "RateLimited")
        self.assertGreaterEqual(int(last[2].getheader("Retry-After")), 1)
        self.assertIn("retryAfter", p)

    def test_idempotent_retries(self):
        before = len(self.d.outbox_files())
        h = {"Idempotency-Key": "order-77-attempt"}
        s1, first, _ = self.send(to="idem@example.org", headers=h)
        s2, second, r2 = self.send(to="idem@example.org", headers=h)
        self.assertEqual((s1, s2), (201, 201))
        self.assertEqual(first["id"], second["id"])
        self.assertEqual(r2.getheader("Idempotent-Replayed"), "true")
        self.assertEqual(len(self.d.outbox_files()), before + 1)  # one delivery
        p = self.assertProblem(self.send(to="idem2@example.org", headers=h), 422, "IdempotencyKeyReused")
        self.assertEqual(p["idempotencyKey"], "order-77-attempt")
        # The same Idempotency-Key under another API key is a key of its own.
        s3, third, _ = self.request("POST", "/v1/apps/other/verifications", {"to": "idem@example.org"}, self.other, h)
        self.assertEqual(s3, 201)
        self.assertNotEqual(third["id"], first["id"])

    def test_varlink_send_idempotency_key(self):
        before = len(self.d.outbox_files())
        params = {"app": "shop", "destination": "vl-idem@example.org", "purpose": "verify",
                  "idempotencyKey": "vl-order-9"}
        first = self.d.call("io.twofactor.Otp.Send", params)
        second = self.d.call("io.twofactor.Otp.Send", params)
        self.assertNotIn("error", first, first)
        self.assertEqual(first["parameters"]["request"]["id"], second["parameters"]["request"]["id"])
        self.assertEqual(len(self.d.outbox_files()), before + 1)
        changed = dict(params, destination="vl-other@example.org")
        self.assertEqual(self.d.call("io.twofactor.Otp.Send", changed)["error"],
                         "io.twofactor.Otp.IdempotencyKeyReused")

    def test_request_log_names_endpoint_key_and_client(self):
        _, sent, _ = self.send(to="log@example.org")
        key_id = self.full.split("_")[1]
        entries = wait_for(lambda: [e for e in self.d.call("io.twofactor.Daemon.RequestLog", {"limit": 1000})
                                    ["parameters"]["entries"] if e.get("keyId") == key_id], 10)
        e = entries[-1]
        self.assertEqual(e["method"], "POST /v1/apps/{app}/verifications")
        self.assertEqual(e["clientIp"], "127.0.0.1")
        self.assertIn(e["status"], (201, 429))
        self.assertNotIn(sent["id"], json.dumps(entries))  # the route, not the path

    def test_audit_records_name_the_api_key(self):
        _, sent, _ = self.send(to="audited@example.org")
        key_id = self.full.split("_")[1]
        status, _, _ = self.request("POST", "/v1/verifications/%s/cancel" % sent["id"], key=self.full)
        self.assertEqual(status, 200)
        r = self.d.cli("--json", "audit", "list", "--app", "shop")
        self.assertEqual(r.returncode, 0, r.stderr)
        records = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        mine = [x for x in records if x.get("requestId") == sent["id"]]
        self.assertEqual(sorted(x["event"] for x in mine), ["cancel", "send"])
        for x in mine:
            self.assertNotIn("uid", x)  # no peer: the key is the actor
            self.assertTrue(x["detail"].startswith("api key " + key_id), x)
            self.assertNotIn(self.full.split("_")[2], x["detail"])  # never the secret
        r = self.d.cli("audit", "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_openapi_document_is_served(self):
        status, doc, _ = self.request("GET", "/v1/openapi.json")
        self.assertEqual(status, 200)
        self.assertEqual(doc["openapi"], "3.1.0")
        with open(os.path.join(os.environ["TWOFACTOR_SOURCE_DIR"], "lib/http/openapi.json")) as f:
            self.assertEqual(doc, json.load(f))

    # --- the listener ---

    def test_tls12_refused_when_13_required(self):
        ctx = self.context(maximum_version=ssl.TLSVersion.TLSv1_2)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with self.assertRaises(ssl.SSLError):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    def tls_socket(self):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return self.context().wrap_socket(raw, server_hostname="127.0.0.1")

    def rss_kib(self):
        with open("/proc/%d/status" % self.d.proc.pid) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def exchange(self, payload):
        s = self.tls_socket()
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server may answer and close before reading it all
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass
        s.close()
        return out

    def test_huge_headers_refused_memory_unchanged(self):
        before = self.rss_kib()
        for _ in range(8):
            payload = b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * (1 << 20) + b"\r\n\r\n"
            out = self.exchange(payload)
            self.assertTrue(out.startswith(b"HTTP/1.1 431"), out[:100])
        many = b"".join(b"X-%d: v\r\n" % i for i in range(200))
        out = self.exchange(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431"), out[:100])
        grown = self.rss_kib() - before
        print("# RSS after 8 x 1 MiB of headers: %+d KiB" % grown)
        self.assertLess(grown, 16 * 1024)  # what was sent (8 MiB) was never held

    def test_conflicting_content_length_is_400(self):
        out = self.exchange(b"POST /v1/apps/shop/verifications HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                            b"Content-Length: 5\r\n\r\n{}")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out[:100])

    def test_idle_and_slow_clients_do_not_hold_up_others(self):
        idle = [self.tls_socket() for _ in range(64)]
        slow = []
        for _ in range(8):
            s = self.tls_socket()
            s.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(s)
        started = time.monotonic()
        status, _, _ = self.request("GET", "/v1/verifications/nope", key=self.full)
        print("# answered in %.1f ms beside 64 idle and 8 slowloris connections" % ((time.monotonic() - started) * 1000))
        self.assertEqual(status, 404)
        # A slowloris client trickling bytes is cut at the header deadline, however slowly it sends.
        for s in slow:
            s.settimeout(20)
        closed = 0
        for _ in range(8):
            try:
                for s in slow:
                    s.sendall(b"a")
            except OSError:
                pass
            time.sleep(0.5)
        for s in slow + idle:
            s.settimeout(20)
            try:
                data = s.recv(100)
                closed += 1 if data == b"" or data.startswith(b"HTTP/1.1 4") else 0
            except (OSError, ssl.SSLError):
                closed += 1
            s.close()
        self.assertEqual(closed, 72)


class CredentialsDaemon(harness.Daemon):
    """A daemon started as systemd would with LoadCredential=: the
    certificate and key are http-cert and http-key in $CREDENTIALS_DIRECTORY."""

    def __init__(self, config, creds):
        super().__init__(config=config, clock=T0)
        self.creds = creds

    def env(self):
        env = super().env()
        env["CREDENTIALS_DIRECTORY"] = self.creds
        return env


class TlsSettings(unittest.TestCase):
    """min_tls = "1.2" lets a TLS 1.2 client in; the certificate comes from
    systemd credentials when no file is named, and SIGHUP reloads it."""

    def test_tls12_allowed_credentials_and_reload_on_sighup(self):
        root = tempfile.mkdtemp(prefix="twofactor-tls-")
        self.addCleanup(shutil.rmtree, root, True)
        creds = os.path.join(root, "creds")
        os.makedirs(creds)
        first_ca = make_tls(os.path.join(root, "first"))
        second_ca = make_tls(os.path.join(root, "second"))

        def install(which):
            for src, dst in (("server.pem", "http-cert"), ("server.key", "http-key")):
                shutil.copy(os.path.join(root, which, src), os.path.join(creds, dst + ".new"))
                os.chmod(os.path.join(creds, dst + ".new"), 0o600)
                os.rename(os.path.join(creds, dst + ".new"), os.path.join(creds, dst))

        install("first")
        config = (CONFIG.replace('cert_file = "{root}/tls/server.pem"\nkey_file = "{root}/tls/server.key"\n',
                                 'min_tls = "1.2"\n'))
        self.assertNotIn("cert_file", config)
        d = CredentialsDaemon(config, creds)
        self.addCleanup(d.cleanup)
        d.start()
        m = wait_for(lambda: re.search(r"https: listening on 127\.0\.0\.1:(\d+)", d.read_log()), 10)
        self.assertTrue(m, d.read_log()[-2000:])
        port = int(m.group(1))

        def handshake(ca, version=None):
            ctx = ssl.create_default_context(cafile=ca)
            if version is not None:
                ctx.minimum_version = ctx.maximum_version = version
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    return s.version()

        self.assertEqual(handshake(first_ca, ssl.TLSVersion.TLSv1_2), "TLSv1.2")
        self.assertEqual(handshake(first_ca), "TLSv1.3")
        with self.assertRaises(ssl.SSLError):
            handshake(second_ca)

        # A new certificate in place, then SIGHUP: new connections get it.
        install("second")
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: self.try_handshake(handshake, second_ca), 10), d.read_log()[-2000:])
        with self.assertRaises(ssl.SSLError):
            handshake(first_ca)

        # A key that does not load keeps the certificate in use, and the log says why.
        with open(os.path.join(creds, "http-key"), "w") as f:
            f.write("not a key\n")
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "keeping the old certificate" in d.read_log().split("received SIGHUP")[-1],
                                 10), d.read_log()[-2000:])
        self.assertIn("http-key", d.read_log().split("received SIGHUP")[-1])
        self.assertEqual(handshake(second_ca), "TLSv1.3")

    @staticmethod
    def try_handshake(handshake, ca):
        try:
            return handshake(ca)
        except (ssl.SSLError, OSError):
            return None


class KeyLimit(unittest.TestCase):
    """key_requests_per_minute is counted in the store: a restart (or another
    daemon on the same database) does not give a key a fresh minute."""

    def test_limit_survives_a_restart(self):
        d = harness.Daemon(config=CONFIG.replace("key_requests_per_minute = 100000", "key_requests_per_minute = 3"),
                           clock=T0)
        try:
            ca = make_tls(os.path.join(d.root, "tls"))
            d.start()
            key = d.cli("apikey", "create", "--app", "shop", "--scope", "status").stdout.strip()

            def get():
                port = int(re.findall(r"https: listening on 127\.0\.0\.1:(\d+)", d.read_log())[-1])
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=ca),
                                                   timeout=10)
                conn.request("GET", "/v1/verifications/nope", headers={"Authorization": "Bearer " + key})
                r = conn.getresponse()
                body = r.read()
                conn.close()
                return r.status, body, r.getheader("Retry-After")

            wait_for(lambda: re.search(r"https: listening on", d.read_log()), 10)
            self.assertEqual([get()[0] for _ in range(3)], [404, 404, 404])
            status, body, retry = get()
            self.assertEqual(status, 429)
            self.assertEqual(json.loads(body)["scope"], "apiKey")
            self.assertEqual(retry, "60")
            d.stop()
            d.start()
            wait_for(lambda: len(re.findall(r"https: listening on", d.read_log())) >= 2, 10)
            self.assertEqual(get()[0], 429)
            d.set_clock(T0 + 60)  # the window is over
            self.assertEqual(get()[0], 404)
        finally:
            d.cleanup()


if __name__ == "__main__":
    harness.main()

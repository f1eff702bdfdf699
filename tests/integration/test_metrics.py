"""Metrics: the Prometheus endpoint of [metrics] listen, scraped and parsed
with python3-prometheus-client's parser, the bounds of its HTTP responder,
the loopback-only listen address, and `twofactor stats` with its figures from
the delivery and audit logs."""
import json
import os
import socket
import time
import unittest
import urllib.error
import urllib.request

import harness

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # python3-prometheus-client (packaging/install-deps.sh)
    text_string_to_metric_families = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[delivery]
email = "outbox"

[metrics]
listen = "127.0.0.1:%d"

[apps.shop]
max_attempts = 3

[apps.shop.rate_limits]
resend_cooldown = 0
destination_sends = 3
destination_window = 3600
""" % PORT


def scrape(path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (PORT, path), timeout=10) as r:
        return r.status, r.headers, r.read().decode()


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams, family, name, **labels):
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@unittest.skipIf(text_string_to_metric_families is None, "needs python3-prometheus-client")
class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG, clock=1_900_000_000).start()
        # Traffic with every outcome the families count.
        cls.rid = cls.d.send("metrics-a@example.org", "shop")
        cls.code = cls.d.code_for(cls.rid)  # read now: an approved request's message leaves the outbox
        ok = cls.d.cli("verify", "--id", cls.rid, "--code", cls.code)
        assert ok.returncode == 0, ok.stderr
        replay = cls.d.cli("verify", "--id", cls.rid, "--code", cls.code)
        assert replay.returncode == 1, replay.stderr
        other = cls.d.send("metrics-b@example.org", "shop")
        wrong = "000000" if cls.d.code_for(other) != "000000" else "111111"
        cls.d.cli("verify", "--id", other, "--code", wrong)
        for _ in range(2):
            cls.d.send("metrics-a@example.org", "shop")
        cls.refused = cls.d.cli("send", "--app", "shop", "--to", "metrics-a@example.org")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_scrape_parses_with_the_prometheus_parser(self):
        status, headers, text = scrape()
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        fams = families(text)
        for name in ("twofactor_deliveries", "twofactor_provider_request_duration_seconds", "twofactor_verifications",
                     "twofactor_store_queue_depth", "twofactor_build_info", "twofactor_sends", "twofactor_refusals"):
            self.assertIn(name, fams)
        self.assertEqual(fams["twofactor_provider_request_duration_seconds"].type, "histogram")
        self.assertEqual(fams["twofactor_deliveries"].type, "counter")
        self.assertEqual(fams["twofactor_store_queue_depth"].type, "gauge")

    def test_counts_follow_what_happened(self):
        fams = families(scrape()[2])
        self.assertEqual(sample(fams, "twofactor_deliveries", "twofactor_deliveries_total",
                                channel="email", driver="outbox", outcome="accepted"), 4)
        self.assertEqual(sample(fams, "twofactor_sends", "twofactor_sends_total"), 4)
        self.assertEqual(sample(fams, "twofactor_verifications", "twofactor_verifications_total", outcome="approved"), 1)
        self.assertEqual(sample(fams, "twofactor_verifications", "twofactor_verifications_total", outcome="replayed"), 1)
        self.assertEqual(sample(fams, "twofactor_verifications", "twofactor_verifications_total", outcome="wrong_code"), 1)
        self.assertEqual(self.refused.returncode, 5, self.refused.stderr)
        self.assertEqual(sample(fams, "twofactor_refusals", "twofactor_refusals_total", limit="destination"), 1)
        self.assertEqual(sample(fams, "twofactor_provider_request_duration_seconds",
                                "twofactor_provider_request_duration_seconds_count", channel="email", driver="outbox"), 4)
        self.assertEqual(sample(fams, "twofactor_provider_request_duration_seconds",
                                "twofactor_provider_request_duration_seconds_bucket",
                                channel="email", driver="outbox", le="+Inf"), 4)
        self.assertEqual(sample(fams, "twofactor_build_info", "twofactor_build_info"), 1)

    def test_no_personal_data_in_labels(self):
        text = scrape()[2]
        for secret in ("metrics-a@example.org", "metrics-b@example.org", self.rid, self.code):
            self.assertNotIn(secret, text)
        allowed = {"channel", "driver", "outcome", "limit", "le", "version"}
        for fam in families(text).values():
            for s in fam.samples:
                self.assertLessEqual(set(s.labels), allowed, s)

    def test_only_get_metrics(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            scrape("/")
        self.assertEqual(e.exception.code, 404)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % PORT, data=b"x", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 405)

    def test_head_and_keep_alive(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        try:
            conn.request("HEAD", "/metrics")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            length = int(r.getheader("Content-Length"))
            self.assertGreater(length, 0)
            self.assertEqual(r.read(), b"")
            # The same connection serves the next scrape, whose body has that length or near it.
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertTrue(r.getheader("Content-Type").startswith("text/plain; version=0.0.4"))
            self.assertIn("twofactor_", r.read().decode())
            conn.request("POST", "/metrics", body=b"x")
            r = conn.getresponse()
            r.read()
            self.assertEqual((r.status, r.getheader("Allow")), (405, "GET, HEAD"))
        finally:
            conn.close()

    def test_oversized_head_refused_and_the_daemon_serves_on(self):
        with socket.create_connection(("127.0.0.1", PORT), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
            reply = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        self.assertTrue(reply.startswith(b"HTTP/1.1 431"), reply[:80])
        self.assertEqual(scrape()[0], 200)

    def test_a_silent_client_is_cut_off(self):
        # The deadline ends an exchange that never sends its head; another
        # scraper is served meanwhile.
        with socket.create_connection(("127.0.0.1", PORT), timeout=30) as s:
            self.assertEqual(scrape()[0], 200)
            started = time.monotonic()
            self.assertEqual(s.recv(1), b"")
            self.assertLess(time.monotonic() - started, 25)

    def test_stats(self):
        r = self.d.cli("--json", "stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        st = json.loads(r.stdout)
        self.assertEqual(st["sends"], 4)
        self.assertEqual(st["deliveries"], [{"channel": "email", "driver": "outbox", "outcome": "accepted", "count": 4}])
        self.assertEqual(st["deliverySuccessRate"], 1.0)
        self.assertIn("providerLatencyP50Ms", st)
        self.assertLessEqual(st["providerLatencyP50Ms"], st["providerLatencyP99Ms"])
        by = {v["outcome"]: v["count"] for v in st["verifications"]}
        self.assertEqual(by.get("approved"), 1)
        self.assertEqual(sum(by.values()), 3)
        self.assertEqual({v["outcome"]: v["count"] for v in st["refusals"]}, {"destination": 1})
        self.assertFalse(st["sampled"])
        text = self.d.cli("stats")
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn("success rate   100.0%", text.stdout)
        self.assertIn("refusals       destination 1", text.stdout)

    def test_stats_since_excludes_earlier_activity(self):
        r = self.d.cli("--json", "stats", "--since", str(1_900_000_000 + 3600), "--until", str(1_900_000_000 + 7200))
        self.assertEqual(r.returncode, 0, r.stderr)
        st = json.loads(r.stdout)
        self.assertEqual((st["sends"], st["deliveries"], st["verifications"]), (0, [], []))
        self.assertNotIn("deliverySuccessRate", st)
        bad = self.d.cli("stats", "--since", "yesterday")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--since", bad.stderr)


class ListenChecks(unittest.TestCase):
    def check(self, listen):
        d = harness.Daemon(config='[metrics]\nlisten = "%s"\n[apps.shop]\n' % listen)
        try:
            r = __import__("subprocess").run([harness.TWOFACTORD, "--check-config", "--config", d.config_path],
                                             capture_output=True, text=True, timeout=30)
        finally:
            d.cleanup()
        return r

    def test_loopback_only(self):
        r = self.check("0.0.0.0:9464")
        self.assertEqual(r.returncode, 2)
        self.assertIn("metrics.listen", r.stderr)
        self.assertIn("loopback", r.stderr)
        self.assertEqual(self.check("[::1]:9464").returncode, 0)
        self.assertEqual(self.check("127.0.0.1:9464").returncode, 0)

    def test_malformed(self):
        for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "localhost:9464", ":9464"):
            r = self.check(bad)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("metrics.listen", r.stderr)


if __name__ == "__main__":
    harness.main()

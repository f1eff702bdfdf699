"""The request log through the real twofactord: every Varlink call is
recorded after its reply with its method, result and the caller's uid,
readable by admins only with `twofactor calls` (io.twofactor.Daemon.RequestLog)."""
import json
import os
import time
import unittest

import harness

T0 = 1_800_000_000

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[access.operator]
users = ["1234"]

[apps.default]
"""


class RequestLog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG, clock=T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def calls(self, *args):
        r = self.d.cli("--json", "calls", "--limit", "100000", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines()]

    def wait_for(self, match):
        # Written after the reply, through the store's queue: give it a moment.
        for _ in range(100):
            found = [c for c in self.calls() if match(c)]
            if found:
                return found
            time.sleep(0.05)
        self.fail("no such call in the request log")

    def test_a_call_appears_with_method_result_and_uid(self):
        self.assertEqual(self.d.cli("send", "--app", "default", "--to", "log@example.org").returncode, 0)
        found = self.wait_for(lambda c: c["method"] == "io.twofactor.Otp.Send")
        c = found[-1]
        self.assertEqual(c["result"], "ok")
        self.assertEqual(c["uid"], os.getuid())
        self.assertEqual(c["time"], T0)
        self.assertGreaterEqual(c["durationMs"], 0)
        self.assertEqual(set(c), {"time", "method", "durationMs", "result", "uid"})
        self.assertNotIn("log@example.org", json.dumps(self.calls()))

    def test_errors_are_named(self):
        self.assertNotEqual(self.d.cli("status", "nosuchrequest").returncode, 0)
        found = self.wait_for(lambda c: c["method"] == "io.twofactor.Otp.Status")
        self.assertEqual(found[-1]["result"], "io.twofactor.Otp.NoSuchRequest")

    def test_a_denied_call_appears_as_permission_denied(self):
        # A peer with a role that does not cover the method.
        r = self.d.cli("calls", user=1234)
        self.assertEqual(r.returncode, 4, r.stderr)
        found = self.wait_for(lambda c: c["uid"] == 1234)
        self.assertEqual(found[-1]["method"], "io.twofactor.Daemon.RequestLog")
        self.assertEqual(found[-1]["result"], "org.varlink.service.PermissionDenied")

    def test_a_peer_with_no_role_writes_no_rows(self):
        # Its denials are counted in the audit log instead (see test_flood.py).
        for _ in range(3):
            self.assertEqual(self.d.cli("calls", user=65534).returncode, 4)
        self.d.cli("status", "marker")
        self.wait_for(lambda c: c["method"] == "io.twofactor.Otp.Status")
        self.assertEqual([c for c in self.calls() if c["uid"] == 65534], [])

    def test_time_filters_and_limit(self):
        self.d.cli("status", "nosuchrequest")
        self.wait_for(lambda c: c["method"] == "io.twofactor.Otp.Status")
        self.assertEqual(self.calls("--since", str(T0 + 1)), [])
        self.assertEqual(self.calls("--until", str(T0)), [])
        r = self.d.cli("--json", "calls", "--limit", "1")
        self.assertEqual(len(r.stdout.splitlines()), 1)
        r = self.d.cli("calls", "--since", "yesterday")
        self.assertEqual(r.returncode, 2, r.stderr)


if __name__ == "__main__":
    harness.main()

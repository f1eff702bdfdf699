"""The Varlink surface: introspection, strict parsing, limits, hostile clients."""
import json
import os
import socket
import subprocess
import threading
import time
import unittest

import harness

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[limits]
max_message_bytes = 65536
idle_timeout = 2
request_timeout = 2
max_connections_per_uid = 20

[access.admin]
users = ["{uid}"]

[apps.shop]
display_name = "Shop"
"""


class Varlink(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def assertStillServes(self):
        r = self.d.call("io.twofactor.Daemon.WhoAmI")
        self.assertEqual(r["parameters"]["uid"], os.getuid())

    def test_get_info(self):
        r = self.d.call("org.varlink.service.GetInfo")
        p = r["parameters"]
        self.assertEqual(p["product"], "twofactord")
        self.assertEqual(sorted(p["interfaces"]),
                         ["io.twofactor.Audit", "io.twofactor.Daemon", "io.twofactor.Maintenance", "io.twofactor.OptOut",
                          "io.twofactor.Otp", "io.twofactor.Privacy", "org.varlink.service"])

    def test_interface_description_matches_installed_file(self):
        src = os.environ["TWOFACTOR_SOURCE_DIR"]
        for name in ("io.twofactor.Otp", "io.twofactor.Daemon"):
            r = self.d.call("org.varlink.service.GetInterfaceDescription", {"interface": name})
            with open(os.path.join(src, "lib", "ipc", name + ".varlink")) as f:
                self.assertEqual(r["parameters"]["description"], f.read())
        r = self.d.call("org.varlink.service.GetInterfaceDescription", {"interface": "no.such.Iface"})
        self.assertEqual(r["error"], "org.varlink.service.InterfaceNotFound")

    def test_unknown_method(self):
        r = self.d.call("io.twofactor.Otp.Frobnicate", {})
        self.assertEqual(r["error"], "org.varlink.service.MethodNotFound")
        r = self.d.call("com.example.Nope.Method", {})
        self.assertEqual(r["error"], "org.varlink.service.InterfaceNotFound")

    def test_invalid_parameters_are_named(self):
        cases = [
            ({"destination": "a@example.org"}, "app"),                          # missing
            ({"app": "shop", "destination": "a@example.org", "bogus": 1}, "bogus"),  # unknown
            ({"app": 7, "destination": "a@example.org"}, "app"),                # wrong type
            ({"app": "shop", "destination": "a@example.org", "ttl": "60"}, "ttl"),
            ({"app": "shop", "destination": "a@example.org", "ttl": 1.5}, "ttl"),
            ({"app": "shop", "destination": "a@example.org", "purpose": "fun"}, "purpose"),
        ]
        for params, field in cases:
            r = self.d.call("io.twofactor.Otp.Send", params)
            self.assertEqual(r.get("error"), "org.varlink.service.InvalidParameter", params)
            self.assertEqual(r["parameters"]["parameter"], field, params)
        self.assertEqual(self.d.outbox_files(), [])  # nothing was sent or stored

    def test_send_over_raw_varlink(self):
        r = self.d.call("io.twofactor.Otp.Send", {"app": "shop", "destination": "raw@example.org"})
        req = r["parameters"]["request"]
        self.assertEqual(req["status"], "pending")
        self.assertEqual(req["destination"], "r***@example.org")
        code = self.d.code_for(req["id"])
        self.assertIn("Shop", self.d.message_for(req["id"]))
        r = self.d.call("io.twofactor.Otp.Verify", {"id": req["id"], "code": code})
        self.assertEqual(r["parameters"]["approved"], True)

    def test_malformed_messages_refused_others_keep_working(self):
        bad = [b"this is not json\0", b"[1,2,3]\0", b'{"method": 5}\0', b'{"method":"x.Y","extra":1}\0',
               b"[" * 5000 + b"\0", b'{"method":"io.twofactor.Otp.Status","parameters":[]}\0']
        for payload in bad:
            with self.d.connect() as c:
                c.send_raw(payload)
                reply = c.recv_message()
                self.assertEqual(reply["error"], "io.twofactor.Daemon.InvalidMessage", payload[:40])
                self.assertIsNone(c.recv_message())  # then the daemon hangs up
            self.assertStillServes()

    def test_oversized_message_refused(self):
        with self.d.connect() as c:
            other = self.d.connect()
            big = b'{"method":"io.twofactor.Daemon.WhoAmI","parameters":{"x":"' + b"a" * 70000 + b'"}}\0'
            try:
                c.send_raw(big)
            except (BrokenPipeError, ConnectionResetError):
                pass
            reply = c.recv_message()
            self.assertEqual(reply["error"], "io.twofactor.Daemon.InvalidMessage")
            self.assertIn("65536", reply["parameters"]["reason"])
            # A connection opened before keeps working.
            self.assertIn("uid", other.call("io.twofactor.Daemon.WhoAmI")["parameters"])
            other.sock.close()

    def test_slow_client_does_not_stall_others(self):
        slow = self.d.connect()
        slow.send_raw(b'{"method":"io.twofactor.Daemon.Wh')  # never finishes
        t0 = time.time()
        self.assertStillServes()
        self.assertLess(time.time() - t0, 2)
        # The partial message times out and the daemon hangs up.
        slow.sock.settimeout(10)
        self.assertIsNone(slow.recv_message())
        slow.sock.close()

    def test_idle_connection_closed(self):
        c = self.d.connect()
        c.sock.settimeout(10)
        t0 = time.time()
        self.assertIsNone(c.recv_message())
        self.assertGreaterEqual(time.time() - t0, 1.5)
        c.sock.close()

    def test_pipelined_calls_answered_in_order(self):
        with self.d.connect() as c:
            msgs = b"".join(json.dumps({"method": m}).encode() + b"\0" for m in
                            ["io.twofactor.Daemon.WhoAmI", "org.varlink.service.GetInfo", "io.twofactor.Daemon.WhoAmI"])
            c.send_raw(msgs)
            self.assertIn("uid", c.recv_message()["parameters"])
            self.assertIn("interfaces", c.recv_message()["parameters"])
            self.assertIn("uid", c.recv_message()["parameters"])

    def test_oneway_gets_no_reply(self):
        with self.d.connect() as c:
            c.send_raw(json.dumps({"method": "io.twofactor.Daemon.WhoAmI", "oneway": True}).encode() + b"\0")
            r = c.call("org.varlink.service.GetInfo")
            self.assertIn("interfaces", r["parameters"])

    def test_connections_per_uid_limited(self):
        conns = [self.d.connect() for _ in range(20)]
        try:
            extra = self.d.connect()
            reply = extra.recv_message()
            self.assertEqual(reply["error"], "io.twofactor.Daemon.TooManyConnections")
            self.assertEqual(reply["parameters"]["limit"], 20)
            extra.sock.close()
        finally:
            for c in conns:
                c.sock.close()
        time.sleep(0.3)
        self.assertStillServes()

    def test_permission_denied_over_varlink(self):
        def as_nobody():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        script = ("import json,socket;s=socket.socket(socket.AF_UNIX);s.connect(%r);"
                  "s.sendall(json.dumps({'method':'io.twofactor.Daemon.GetStatus'}).encode()+b'\\0');"
                  "print(s.recv(4096).rstrip(b'\\0').decode())") % self.d.socket
        out = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True,
                             preexec_fn=as_nobody, timeout=30)
        self.assertEqual(json.loads(out.stdout)["error"], "org.varlink.service.PermissionDenied", out.stderr)

    def test_admin_status(self):
        r = self.d.call("io.twofactor.Daemon.GetStatus")
        self.assertEqual(r["parameters"]["apps"], ["shop"])


if __name__ == "__main__":
    harness.main()

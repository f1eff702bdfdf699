"""The Varlink surface: introspection, strict parsing, limits, hostile clients."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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
                         ["io.twofactor.ApiKey", "io.twofactor.Audit", "io.twofactor.Daemon", "io.twofactor.Events", "io.twofactor.Maintenance", "io.twofactor.OptOut",
                          "io.twofactor.Otp", "io.twofactor.Privacy", "io.twofactor.Suppression", "org.varlink.service"])

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

    def test_too_many_connections_reaches_the_cli_as_exit_5(self):
        conns = [self.d.connect() for _ in range(20)]
        try:
            r = self.d.cli("whoami")
            self.assertEqual(r.returncode, 5, r.stderr)
            self.assertIn("refused the connection: this user already has 20 open", r.stderr)
            self.assertNotIn("Broken pipe", r.stderr)
        finally:
            for c in conns:
                c.sock.close()
        time.sleep(0.3)
        self.assertStillServes()

    def test_peer_strings_are_escaped_in_the_log(self):
        # An unknown field's name is quoted in the log's reason: it must not
        # start a line of its own nor reach the terminal as an escape.
        with self.d.connect() as c:
            c.send_raw(b'{"method":"io.twofactor.Daemon.WhoAmI","x\\ntwofactord: error: forged\\u001b[2J":1}\0')
            self.assertEqual(c.recv_message()["error"], "io.twofactor.Daemon.InvalidMessage")
        time.sleep(0.2)
        log = self.d.read_log()
        self.assertNotIn("\ntwofactord: error: forged", log)
        self.assertNotIn("\x1b", log)
        self.assertIn("x\\ntwofactord: error: forged\\x1b[2J", log)
        self.assertStillServes()


# A stand-in for twofactord that someone else runs: it records what it
# receives and answers every call "approved".
FAKE_SERVER = r"""
import json, os, socket, sys
path, uid, ready, got = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o666)
# SO_PEERCRED names whoever called listen().
os.setgroups([]); os.setgid(uid); os.setuid(uid)
s.listen(4)
open(ready, "w").close()
s.settimeout(10)
try:
    c, _ = s.accept()
    c.settimeout(5)
    data = c.recv(65536)
    with open(got, "wb") as f:
        f.write(data)
    if data:
        c.sendall(json.dumps({"parameters": {"approved": True, "status": "approved"}}).encode() + b"\0")
except socket.timeout:
    pass
"""


class TotalConnections(unittest.TestCase):
    """[limits] max_connections caps the connections of all uids together,
    root's not counted, so root can always get in."""

    def test_other_uids_refused_beyond_the_total_root_never(self):
        d = harness.Daemon(config="""
[daemon]
state_dir = "{root}/state"
generate_keys = true

[limits]
max_connections = 2
max_connections_per_uid = 10

[apps.shop]
""").start()
        self.addCleanup(d.stop)
        script = ("import json,os,socket,sys,time\n"
                  "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
                  "held=[]\n"
                  "def call():\n"
                  "    s=socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(%r)\n"
                  # A refused connection may be closed before the call is
                  # sent: the reply is still there to read, as the CLI does.
                  "    try: s.sendall(json.dumps({'method':'io.twofactor.Daemon.WhoAmI'}).encode()+b'\\0')\n"
                  "    except (BrokenPipeError, ConnectionResetError): pass\n"
                  "    buf=b''\n"
                  "    while not buf.endswith(b'\\0'):\n"
                  "        c=s.recv(4096)\n"
                  "        if not c: break\n"
                  "        buf+=c\n"
                  "    held.append(s); return json.loads(buf.rstrip(b'\\0'))\n"
                  "out=[call() for _ in range(3)]\n"
                  "print(json.dumps(out)); sys.stdout.flush()\n"
                  "sys.stdin.read()\n") % d.socket
        p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        self.addCleanup(p.kill)
        line = p.stdout.readline()
        self.assertTrue(line, p.stderr.read() if not line else "")
        replies = json.loads(line)
        # Two connections of uid 65534 are served; the third is one too many in all.
        self.assertEqual([r.get("error") for r in replies[:2]], [None, None])
        self.assertEqual(replies[2]["error"], "io.twofactor.Daemon.TooManyConnections")
        self.assertEqual(replies[2]["parameters"]["limit"], 2)
        # Root is not counted and not refused while the two are held.
        conns = [d.connect() for _ in range(3)]
        for c in conns:
            self.assertIn("uid", c.call("io.twofactor.Daemon.WhoAmI")["parameters"])
            c.sock.close()
        p.stdin.close()
        p.wait(timeout=10)


class DaemonIdentity(unittest.TestCase):
    """The CLI checks whom it talks to before it sends anything."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="twofactor-fake-")
        os.chmod(self.dir, 0o755)
        # Where the fake server, whatever its uid, leaves what it received.
        self.out = tempfile.mkdtemp(prefix="twofactor-fake-out-")
        os.chmod(self.out, 0o777)
        self.got = os.path.join(self.out, "got")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.out, ignore_errors=True)

    def serve(self, sock_dir, uid):
        path = os.path.join(sock_dir, "twofactord.sock")
        ready = os.path.join(self.out, "ready")
        proc = subprocess.Popen(["/usr/bin/python3", "-c", FAKE_SERVER, path, str(uid), ready, self.got])
        for _ in range(200):
            if os.path.exists(ready):
                break
            time.sleep(0.02)
        return proc, path

    def verify(self, path, user=None):
        cmd = [harness.TWOFACTOR, "--socket", path, "verify", "--id", "r1", "--code", "123456"]
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    def test_a_server_of_another_uid_is_refused_before_the_code_is_sent(self):
        proc, path = self.serve(self.dir, 65534)
        try:
            r = self.verify(path)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("served by uid 65534", r.stderr)
            self.assertNotIn("approved", r.stdout)
        finally:
            proc.kill()
            proc.wait()
        self.assertFalse(os.path.exists(self.got) and os.path.getsize(self.got) > 0)

    def test_a_squatted_socket_directory_is_refused(self):
        # Another user created the directory (a squatted /tmp/twofactor-UID/).
        squat = os.path.join(self.dir, "twofactor-0")
        os.mkdir(squat)
        os.chown(squat, 65534, 65534)
        proc, path = self.serve(squat, 0)
        try:
            r = self.verify(path)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("is owned by uid 65534", r.stderr)
        finally:
            proc.kill()
            proc.wait()
        self.assertFalse(os.path.exists(self.got) and os.path.getsize(self.got) > 0)

    def test_a_writable_socket_directory_is_refused(self):
        shared = os.path.join(self.dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        proc, path = self.serve(shared, 0)
        try:
            r = self.verify(path)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("writable by group or others", r.stderr)
        finally:
            proc.kill()
            proc.wait()

    def test_a_per_user_daemon_is_trusted_by_its_user(self):
        proc, path = self.serve(self.dir, 65534)
        try:
            r = self.verify(path, user=65534)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            proc.kill()
            proc.wait()


class StateDirectory(unittest.TestCase):
    """The daemon keeps its state private and to itself."""

    def setUp(self):
        self.d = harness.Daemon(config=CONFIG)

    def tearDown(self):
        self.d.cleanup()

    def test_files_are_private_whatever_the_callers_umask(self):
        old = os.umask(0)
        try:
            self.d.start()
        finally:
            os.umask(old)
        self.d.send("umask@example.org", "shop")
        for name in ("twofactor.db", "twofactor.db-wal", "twofactor.db-shm", "twofactord.lock"):
            mode = os.stat(os.path.join(self.d.state, name)).st_mode & 0o777
            self.assertEqual(mode, 0o600, name)
        self.assertEqual(os.stat(self.d.state).st_mode & 0o777, 0o700)
        # Other users still reach the socket.
        self.assertEqual(os.stat(os.path.dirname(self.d.socket)).st_mode & 0o777, 0o755)
        self.assertEqual(self.d.cli("whoami", user=65534).returncode, 0)

    def test_a_second_daemon_on_the_same_state_directory_is_refused(self):
        self.d.start()
        second = harness.Daemon(config=CONFIG)
        second.state = self.d.state
        try:
            with self.assertRaises(RuntimeError) as e:
                second.start(timeout=10)
            self.assertIn("another twofactord (pid %d) is using the state directory" % self.d.proc.pid,
                          str(e.exception))
        finally:
            second.cleanup()
        self.assertEqual(self.d.cli("whoami").returncode, 0)

    def test_a_group_accessible_state_directory_is_refused(self):
        os.makedirs(self.d.state)
        os.chmod(self.d.state, 0o750)
        with self.assertRaises(RuntimeError) as e:
            self.d.start(timeout=10)
        self.assertIn("is accessible by group or others (mode 0750)", str(e.exception))
        self.assertIn("chmod 700 " + self.d.state, str(e.exception))
        self.assertEqual(os.listdir(self.d.state), [])


if __name__ == "__main__":
    harness.main()

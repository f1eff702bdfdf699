"""pam_twofactor.so driven by pamtester through a PAM service file written
here: the code goes to the user's destination through a real twofactord, the
right code passes, a wrong one fails, users without a destination follow
nouser=, a daemon that is down denies, and the module's syslog lines never
hold the code."""
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

import harness

MODULE = os.environ.get("PAM_TWOFACTOR", "")

# The PAM caller runs as root (sshd, sudo): root holds the operator role and
# nothing more is needed for a login. dpo is granted only so that this test
# can read the subject's export and see the client IP the module passed.
CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.operator]
users = ["{uid}"]
[access.dpo]
users = ["{uid}"]

[apps.ssh]
[apps.ssh.rate_limits]
resend_cooldown = 0
"""


def code_in(path):
    with open(path) as f:
        body = f.read().split("\n\n", 1)[1]
    m = re.search(r"\b(\d{4,10})\b", body)
    if not m:
        raise AssertionError("no code in " + path)
    return m.group(1)


@unittest.skipUnless(MODULE and os.path.exists(MODULE), "pam_twofactor.so not built")
@unittest.skipUnless(os.geteuid() == 0, "pamtester needs root to read /etc/pam.d")
class PamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG).start()
        cls.tmp = tempfile.mkdtemp(prefix="twofactor-pam-")
        os.chmod(cls.tmp, 0o755)
        cls.map = os.path.join(cls.tmp, "pam-users")
        with open(cls.map, "w") as f:
            f.write("# user  destination\nalice  alice@example.org\nbob\tbob@example.org  # trailing comment\n")
        os.chmod(cls.map, 0o644)
        cls.services = []

    @classmethod
    def tearDownClass(cls):
        for s in cls.services:
            try:
                os.unlink("/etc/pam.d/" + s)
            except FileNotFoundError:
                pass
        cls.d.cleanup()
        subprocess.run(["rm", "-rf", cls.tmp])

    def service(self, *args, socket_path=None):
        name = "twofactor-test-" + uuid.uuid4().hex[:12]
        opts = ["app=ssh", "socket=" + (socket_path or self.d.socket), "timeout=10"] + list(args)
        with open("/etc/pam.d/" + name, "w") as f:
            f.write("auth required %s %s\n" % (MODULE, " ".join(opts)))
        self.services.append(name)
        return name

    def pamtester(self, service, user, code_of=None, rhost=None):
        """Runs pamtester in a mount namespace of its own whose /dev/log is a
        socket this test reads, so the module's syslog lines can be checked.
        code_of(path) gives what to type once the message is in the outbox."""
        log_sock = os.path.join(self.tmp, "log-" + uuid.uuid4().hex[:8])
        sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sink.bind(log_sock)
        olddev = os.path.join(self.tmp, "olddev-" + uuid.uuid4().hex[:8])
        os.mkdir(olddev)
        items = ["-I", "rhost=" + rhost] if rhost else []
        script = ('mount --bind /dev "$1" && mount -t tmpfs tmpfs /dev && ln -s "$1/null" /dev/null && '
                  'ln -s "$2" /dev/log && shift 2 && exec "$@"')
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", olddev, log_sock,
               "pamtester", "-v"] + items + [service, user, "authenticate"]
        before = set(self.d.outbox_files())
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        typed = None
        try:
            if code_of is not None:
                deadline = time.time() + 20
                new = []
                while time.time() < deadline and p.poll() is None:
                    new = sorted(set(self.d.outbox_files()) - before)
                    if new:
                        break
                    time.sleep(0.02)
                if new:
                    typed = code_of(new[-1])
                    p.stdin.write(typed + "\n")
                    p.stdin.flush()
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        sink.setblocking(False)
        lines = []
        while True:
            try:
                lines.append(sink.recv(65536).decode("utf-8", "replace"))
            except BlockingIOError:
                break
        sink.close()
        os.unlink(log_sock)
        os.rmdir(olddev)
        return p.returncode, out + err, lines, typed

    def test_right_code_passes(self):
        rc, out, log, code = self.pamtester(self.service("map=" + self.map), "alice", code_in, rhost="203.0.113.7")
        self.assertEqual(rc, 0, out)
        self.assertIn("successfully authenticated", out)
        self.assertIn("a***@example.org", out)  # the masked destination, shown with PAM_TEXT_INFO
        self.assertNotIn("alice@example.org", out)
        self.assertTrue(log, "the module logged nothing")
        self.assertTrue(any("passed the second factor" in line for line in log), log)
        for line in log:
            self.assertNotIn(code, line)
        # The remote host went to the daemon as the request's client IP.
        r = self.d.call("io.twofactor.Privacy.SubjectExport", {"subject": "alice@example.org"})
        self.assertNotIn("error", r, r)
        self.assertIn("203.0.113.7", json.dumps(r["parameters"]["document"]))

    def test_wrong_code_fails(self):
        def wrong(path):
            right = code_in(path)
            return str((int(right) + 1) % (10 ** len(right))).zfill(len(right))
        rc, out, log, code = self.pamtester(self.service("map=" + self.map), "bob", wrong)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("Authentication failure", out)
        self.assertTrue(any("failed the second factor" in line for line in log), log)
        for line in log:
            self.assertNotIn(code, line)

    def test_user_without_destination(self):
        before = len(self.d.outbox_files())
        rc, out, log, _ = self.pamtester(self.service("map=" + self.map), "mallory")
        self.assertNotEqual(rc, 0, out)  # nouser=deny is the default
        rc, out, log, _ = self.pamtester(self.service("map=" + self.map, "nouser=deny"), "mallory")
        self.assertNotEqual(rc, 0, out)
        self.assertTrue(any("has no destination" in line for line in log), log)
        # nouser=ignore: the module steps aside; with nothing else in the stack
        # PAM then reports no module answered, so pamtester still fails, but
        # differently (and nothing was sent).
        name = self.service("map=" + self.map, "nouser=ignore")
        with open("/etc/pam.d/" + name, "a") as f:
            f.write("auth required pam_permit.so\n")
        rc, out, log, _ = self.pamtester(name, "mallory")
        self.assertEqual(rc, 0, out)
        self.assertEqual(len(self.d.outbox_files()), before, "a code was sent to nobody")

    def test_daemon_down_denies(self):
        gone = os.path.join(self.tmp, "no-daemon.sock")
        name = self.service("map=" + self.map, socket_path=gone)
        with open("/etc/pam.d/" + name, "a") as f:
            f.write("auth optional pam_permit.so\n")
        rc, out, log, _ = self.pamtester(name, "alice")
        self.assertNotEqual(rc, 0, out)
        self.assertTrue(any("cannot reach twofactord" in line for line in log), log)
        # unavailable=ignore lets the rest of the stack decide.
        name = self.service("map=" + self.map, "unavailable=ignore", socket_path=gone)
        with open("/etc/pam.d/" + name, "a") as f:
            f.write("auth required pam_permit.so\n")
        rc, out, log, _ = self.pamtester(name, "alice")
        self.assertEqual(rc, 0, out)

    def test_map_writable_by_others_is_refused(self):
        loose = os.path.join(self.tmp, "loose-users")
        with open(loose, "w") as f:
            f.write("alice alice@example.org\n")
        os.chmod(loose, 0o666)
        rc, out, log, _ = self.pamtester(self.service("map=" + loose), "alice")
        self.assertNotEqual(rc, 0, out)
        self.assertTrue(any("refusing the user map" in line for line in log), log)

    def test_locked_request_answers_maxtries(self):
        # One attempt per request: a wrong code locks it, and the module tells
        # the application to stop asking (PAM_MAXTRIES).
        d = harness.Daemon(config=CONFIG.replace("[apps.ssh]\n", "[apps.ssh]\nmax_attempts = 1\n")).start()
        try:
            def wrong(path):
                right = code_in(path)
                return str((int(right) + 1) % (10 ** len(right))).zfill(len(right))
            self.d, saved = d, self.d
            try:
                rc, out, log, _ = self.pamtester(self.service("map=" + self.map), "alice", wrong)
            finally:
                self.d = saved
            self.assertNotEqual(rc, 0, out)
            self.assertIn("Have exhausted maximum number of retries", out)
        finally:
            d.cleanup()

    def test_bad_option_is_a_service_error(self):
        rc, out, log, _ = self.pamtester(self.service("map=" + self.map, "nouser=maybe"), "alice")
        self.assertNotEqual(rc, 0, out)
        self.assertTrue(any("nouser=maybe" in line for line in log), log)


if __name__ == "__main__":
    harness.main()

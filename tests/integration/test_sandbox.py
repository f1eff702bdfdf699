"""What twofactord.service's sandbox implies, tested without systemd as PID 1:
the units' own exposure score and syntax (systemd-analyze), and the real
daemon run the way the unit runs it — a read-only file system except its
state, runtime and credentials directories, no capabilities, an unprivileged
user, no new privileges (unshare + setpriv) — with every feature that writes
still working: send, verify, key rotation, backup, the retention purge."""
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import harness

NOBODY = 65534
BUILD_ROOT = os.environ.get("TWOFACTOR_BUILD_ROOT", "")
SOURCE_ROOT = os.environ.get("TWOFACTOR_SOURCE_DIR", "")
PEPPER = "a1" * 32

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[delivery]
email = "outbox"

[apps.default]
"""


def configured_unit(name, tmpdir):
    """The unit as meson configured it, with ExecStart pointing at the built
    daemon, so `verify` can check the command it names."""
    with open(os.path.join(BUILD_ROOT, "packaging", name)) as f:
        text = f.read()
    text = re.sub(r"^ExecStart=\S+", "ExecStart=" + harness.TWOFACTORD, text, flags=re.M)
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


@unittest.skipUnless(shutil.which("systemd-analyze") and BUILD_ROOT, "needs systemd-analyze and the build tree")
class Units(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="twofactor-units-")
        cls.service = configured_unit("twofactord.service", cls.tmp)
        cls.socket = configured_unit("twofactord.socket", cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_exposure_at_most_2_0(self):
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", self.service],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        print("# systemd-analyze security --offline=yes twofactord.service: %s" % m.group(1), flush=True)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)

    def test_units_verify(self):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", self.service, self.socket],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stderr.strip(), "")

    def test_directives_the_daemon_relies_on(self):
        with open(self.service) as f:
            lines = set(l.strip() for l in f if not l.startswith("#"))
        for directive in ["CapabilityBoundingSet=", "ProtectSystem=strict", "StateDirectory=twofactor",
                          "UMask=0077", "SystemCallFilter=@system-service", "NoNewPrivileges=yes",
                          "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "MemoryDenyWriteExecute=yes"]:
            self.assertIn(directive, lines)
        # PrivateUsers= would turn every client into nobody through SO_PEERCRED.
        self.assertNotIn("PrivateUsers=yes", lines)


class SandboxedDaemon(harness.Daemon):
    """A twofactord in its own mount namespace, where every mount is read-only
    but the state, runtime and credentials directories (as ProtectSystem=strict,
    StateDirectory=, RuntimeDirectory= and LoadCredential= leave it), run as
    nobody with an empty bounding set and no new privileges."""

    def __init__(self, config):
        super().__init__(config=config, clock=1_900_000_000)
        self.runtime = os.path.dirname(self.socket)
        self.credentials = os.path.join(self.root, "credentials")
        os.makedirs(self.state, mode=0o700)
        os.chown(self.state, NOBODY, NOBODY)
        # As twofactord.socket makes it: root's directory, root's socket,
        # handed to the daemon as a listening descriptor.
        os.makedirs(self.runtime, mode=0o755)
        os.makedirs(self.credentials, mode=0o500)
        with open(os.path.join(self.credentials, "code-pepper"), "w") as f:
            f.write(PEPPER + "\n")
        os.chmod(os.path.join(self.credentials, "code-pepper"), 0o400)
        for p in (self.credentials, os.path.join(self.credentials, "code-pepper")):
            os.chown(p, NOBODY, NOBODY)

    def env(self):
        env = super().env()
        env["CREDENTIALS_DIRECTORY"] = self.credentials
        return env

    def args(self):
        writable = [self.state, self.runtime]
        script = "set -e\nmount --make-rprivate /\n"
        # Bound onto themselves first, so they are mounts of their own that
        # the read-only remount below passes over.
        script += "".join("mount --bind %s %s\n" % (shlex.quote(d), shlex.quote(d)) for d in writable + [self.credentials])
        script += "mount -o remount,bind,ro %s\n" % shlex.quote(self.credentials)
        skip = " ".join(shlex.quote(d) for d in writable)
        script += (
            "for mp in $(awk '{print $5}' /proc/self/mountinfo); do\n"
            "  case \" %s \" in *\" $mp \"*) continue;; esac\n"
            "  case $mp in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac\n"
            "  mount -o remount,bind,ro \"$mp\" 2>/dev/null || true\n"
            "done\n" % skip)
        # LISTEN_PID is the shell's pid, which exec hands on to twofactord.
        script += "export LISTEN_FDS=1 LISTEN_PID=$$\n"
        script += "exec setpriv --reuid=%d --regid=%d --clear-groups --inh-caps=-all --bounding-set=-all " \
                  "--no-new-privs -- %s\n" % (NOBODY, NOBODY, " ".join(shlex.quote(a) for a in super().args()))
        return ["unshare", "--mount", "--", "sh", "-c", script]

    def start(self, timeout=20):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket)
        os.chmod(self.socket, 0o666)
        listener.listen(128)
        fd = listener.fileno()

        def as_fd_3():
            os.dup2(fd, 3)
            os.set_inheritable(3, True)

        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=self.log, env=self.env(),
                                     preexec_fn=as_fd_3, pass_fds=(3,) if fd != 3 else ())
        listener.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("twofactord exited with %d:\n%s" % (self.proc.returncode, self.read_log()))
            if "ready" in self.read_log():
                return self
            time.sleep(0.02)
        raise RuntimeError("twofactord did not start:\n" + self.read_log())


def can_sandbox():
    if os.getuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return False
    r = subprocess.run(["unshare", "--mount", "--", "true"], capture_output=True)
    return r.returncode == 0


@unittest.skipUnless(can_sandbox(), "needs root and a mount namespace (unshare, setpriv)")
class Sandbox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = SandboxedDaemon(CONFIG)
        cls.d.start()
        cls.pid = cls.d.proc.pid
        cls.backups = tempfile.mkdtemp(prefix="twofactor-sandbox-backup-")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.backups, ignore_errors=True)

    def proc_status(self):
        with open("/proc/%d/status" % self.pid) as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)

    def test_runs_unprivileged_without_capabilities(self):
        s = self.proc_status()
        self.assertEqual(s["Uid"].split()[0], str(NOBODY))
        self.assertEqual(s["Gid"].split()[0], str(NOBODY))
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(int(s[cap], 16), 0, cap)
        self.assertEqual(s["NoNewPrivs"], "1")

    def test_root_is_read_only_and_state_writable(self):
        mounts = {}
        with open("/proc/%d/mountinfo" % self.pid) as f:
            for line in f:
                fields = line.split()
                mounts[fields[4]] = fields[5].split(",")
        self.assertIn("ro", mounts["/"])
        self.assertIn("rw", mounts[self.d.state])
        self.assertIn("rw", mounts[self.d.runtime])
        # The daemon served the socket it was handed and made none of its own.
        self.assertIn("listening on the socket systemd passed", self.d.read_log())
        self.assertIn("ro", mounts[self.d.credentials])

    def test_send_and_verify(self):
        rid = self.d.send("sandbox@example.org")
        r = self.d.cli("verify", "--id", rid, "--code", self.d.code_for(rid))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr + self.d.read_log())

    def test_key_rotate_rewrites_the_key_in_the_state_directory(self):
        key_file = os.path.join(self.d.state, "keys", "store.key")
        with open(key_file) as f:
            before = f.read()
        r = self.d.cli("key", "rotate")
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        with open(key_file) as f:
            self.assertNotEqual(f.read(), before)
        rid = self.d.send("after-rotate@example.org")
        r = self.d.cli("verify", "--id", rid, "--code", self.d.code_for(rid))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_backup(self):
        out = os.path.join(self.backups, "backup.db")
        r = self.d.cli("backup", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        self.assertGreater(os.path.getsize(out), 0)
        with open(out, "rb") as f:
            self.assertNotEqual(f.read(16), b"SQLite format 3\0")

    def test_retention_run(self):
        self.d.send("retention@example.org")
        r = self.d.cli("--json", "retention", "run")
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        self.assertIn("codeHashes", json.loads(r.stdout)["counts"])
        r = self.d.cli("retention", "status")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_pepper_came_from_the_credential(self):
        # Generated keys go to the state directory; the pepper was passed as a
        # credential, so no pepper file was generated beside the store key.
        self.assertTrue(os.path.exists(os.path.join(self.d.state, "keys", "store.key")))
        self.assertFalse(os.path.exists(os.path.join(self.d.state, "keys", "pepper.key")))


class JournaledDaemon(harness.Daemon):
    """A twofactord that systemd-journald records, as under systemd: in a
    mount namespace whose /run/systemd and /run/log are directories of the
    test, where a journald of its own listens; INVOCATION_ID set as systemd
    sets it. The journal files stay in the test's directory for journalctl."""

    def __init__(self, config):
        super().__init__(config=config, clock=1_900_000_000)
        self.journal_run = os.path.join(self.root, "journal-run")
        self.journal_log = os.path.join(self.root, "journal-log")
        self.journald_pid = os.path.join(self.root, "journald.pid")
        for d in (self.journal_run, self.journal_log):
            os.makedirs(d)

    def env(self):
        env = super().env()
        env["INVOCATION_ID"] = "0123456789abcdef0123456789abcdef"
        return env

    def args(self):
        script = (
            "set -e\nmount --make-rprivate /\n"
            "mkdir -p /run/systemd /run/log\n"
            "mount --bind %s /run/systemd\nmount --bind %s /run/log\n"
            "mkdir -p /run/systemd/journal\n"
            "env -u INVOCATION_ID /lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &\n"
            "echo $! > %s\n"
            "i=0; while [ ! -S /run/systemd/journal/socket ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n"
            "exec %s\n" % (shlex.quote(self.journal_run), shlex.quote(self.journal_log),
                            shlex.quote(self.journald_pid), " ".join(shlex.quote(a) for a in super().args())))
        return ["unshare", "--mount", "--", "sh", "-c", script]

    def stop(self):
        super().stop()
        try:
            with open(self.journald_pid) as f:
                pid = int(f.read())
            os.kill(pid, 15)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except (OSError, ValueError):
            pass

    def records(self):
        r = subprocess.run(["journalctl", "--directory", os.path.join(self.journal_log, "journal"), "-o", "json",
                            "--no-pager", "SYSLOG_IDENTIFIER=twofactord"], capture_output=True, text=True, timeout=60)
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


@unittest.skipUnless(can_sandbox() and os.path.exists("/lib/systemd/systemd-journald") and shutil.which("journalctl"),
                     "needs root, a mount namespace and systemd-journald")
class Journal(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = JournaledDaemon(CONFIG)
        cls.d.start()
        cls.rid = cls.d.send("journal@example.org")
        cls.code = cls.d.code_for(cls.rid)
        r = cls.d.cli("verify", "--id", cls.rid, "--code", cls.code)
        assert r.returncode == 0, r.stderr
        cls.d.stop()
        cls.recs = cls.d.records()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_records_go_to_the_journal_with_priorities(self):
        ready = [r for r in self.recs if "ready" in r.get("MESSAGE", "")]
        self.assertEqual(len(ready), 1, self.recs)
        self.assertEqual(ready[0]["PRIORITY"], "6")
        # Not on stderr as well.
        self.assertNotIn("ready", self.d.read_log())

    def test_request_and_app_fields(self):
        sent = [r for r in self.recs if " sent request " + self.rid in r.get("MESSAGE", "")]
        self.assertEqual(len(sent), 1, self.recs)
        self.assertEqual(sent[0]["TWOFACTOR_REQUEST"], self.rid)
        self.assertEqual(sent[0]["TWOFACTOR_APP"], "default")
        verified = [r for r in self.recs if r.get("MESSAGE", "").startswith("verify " + self.rid)]
        self.assertEqual(len(verified), 1, self.recs)
        self.assertEqual(verified[0]["TWOFACTOR_REQUEST"], self.rid)

    def test_no_codes_or_addresses(self):
        self.assertGreater(len(self.recs), 2)
        for r in self.recs:
            for k, v in r.items():
                if k.startswith("_") or k.startswith("__"):
                    continue  # journald's own fields: command line, cursor
                self.assertNotIn("journal@example.org", str(v), k)
                self.assertIsNone(re.search(r"\b%s\b" % self.code, str(v)), k)


if __name__ == "__main__":
    harness.main()

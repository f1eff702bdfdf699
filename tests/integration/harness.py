"""Shared pieces of the integration tests: start a real twofactord on a
temporary socket and state directory, run the real twofactor binary, speak raw
Varlink, read the outbox, and report each test case in TAP."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

TWOFACTORD = os.environ.get("TWOFACTORD", "twofactord")
TWOFACTOR = os.environ.get("TWOFACTOR", "twofactor")

# The store the daemons of this run use: PostgreSQL when the run was given a
# server (tests/pg/pg_server.py names a file holding its connection string),
# else SQLCipher. Tests of what only SQLCipher does skip on PostgreSQL.
PG_DSN_FILE = os.environ.get("TWOFACTOR_TEST_PG_DSN_FILE", "")
BACKEND = "postgresql" if PG_DSN_FILE else "sqlcipher"
PSQL = "/usr/bin/psql"


def pg_dsn():
    with open(PG_DSN_FILE) as f:
        return f.read().strip()


def pg_query(sql):
    """Runs SQL on the test server (trust authentication, no secret in the string); returns its output."""
    r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", pg_dsn(), "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql: " + r.stderr)
    return r.stdout.strip()


def pg_audit_rehead(chain):
    """SQL that points an audit chain's head at its last record left (or its
    anchor): what an intruder who cut the chain's tail would also write."""
    return ("UPDATE audit_chains c SET "
            "head_seq = coalesce((SELECT a.seq FROM audit a WHERE a.chain = c.chain ORDER BY a.seq DESC LIMIT 1), "
            "c.anchor_seq), "
            "head_hash = coalesce((SELECT a.hash FROM audit a WHERE a.chain = c.chain ORDER BY a.seq DESC LIMIT 1), "
            "c.anchor_hash) WHERE c.chain = %d" % chain)


def pg_empty():
    """A daemon of its own starts from an empty database, as from a new SQLCipher file."""
    pg_query("DROP SCHEMA public CASCADE; CREATE SCHEMA public")


def store_section():
    """The [store] lines that put a daemon on this run's backend."""
    if BACKEND != "postgresql":
        return ""
    return '\n[store]\nbackend = "postgresql"\ndsn_file = "%s"\n' % PG_DSN_FILE


class Daemon:
    """A twofactord of its own: state dir, socket, clock file, optional config."""

    def __init__(self, config=None, clock=None, extra_args=(), root=None, fresh_store=True):
        if BACKEND == "postgresql" and root is None and fresh_store:
            pg_empty()
        self.root = root or tempfile.mkdtemp(prefix="twofactor-test-")
        os.chmod(self.root, 0o755)  # other uids (the no-role peer) must reach the socket
        self.state = os.path.join(self.root, "state")
        self.socket = os.path.join(self.root, "run", "twofactord.sock")
        self.clock_file = os.path.join(self.root, "clock")
        self.log_path = os.path.join(self.root, "daemon.log")
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(self.root, "twofactord.toml")
            with open(self.config_path, "w") as f:
                f.write(config.format(root=self.root, uid=os.getuid()) + store_section())
        if clock is not None:
            self.set_clock(clock)
        self.extra_args = list(extra_args)
        self.proc = None

    def args(self):
        a = [TWOFACTORD, "--state-dir", self.state, "--socket", self.socket, "--clock-file", self.clock_file]
        if self.config_path:
            a += ["--config", self.config_path]
        return a + self.extra_args

    def env(self):
        env = dict(os.environ)
        env.pop("CREDENTIALS_DIRECTORY", None)
        env.pop("JOURNAL_STREAM", None)
        env.pop("INVOCATION_ID", None)
        return env

    def start(self, timeout=20):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=self.log, env=self.env())
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("twofactord exited with %d:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("twofactord did not start:\n" + self.read_log())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def set_clock(self, t):
        tmp = self.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(int(t)))
        os.replace(tmp, self.clock_file)

    # --- the real CLI ---
    def cli(self, *args, input=None, user=None, env=None):
        cmd = [TWOFACTOR, "--socket", self.socket] + [str(a) for a in args]
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
        e = dict(os.environ)
        e.pop("TWOFACTOR_SOCKET", None)
        if env:
            e.update(env)
        return subprocess.run(cmd, input=input, capture_output=True, text=True, env=e, timeout=60)

    def send(self, to="user@example.org", app="default", *extra):
        r = self.cli("send", "--app", app, "--to", to, *extra)
        if r.returncode != 0:
            raise AssertionError("send failed (%d): %s" % (r.returncode, r.stderr))
        return r.stdout.strip()

    # --- the outbox ---
    def outbox_files(self):
        d = os.path.join(self.state, "outbox", "new")
        try:
            return sorted(os.path.join(d, n) for n in os.listdir(d))
        except FileNotFoundError:
            return []

    def message_for(self, request_id, attempt=None):
        matches = [p for p in self.outbox_files() if "." + request_id + "." in os.path.basename(p)]
        if attempt is not None:
            matches = [p for p in matches if "." + request_id + ".%d." % attempt in os.path.basename(p)]
        if not matches:
            raise AssertionError("no outbox message for " + request_id)
        with open(matches[-1]) as f:
            return f.read()

    def code_for(self, request_id, attempt=None):
        import re
        text = self.message_for(request_id, attempt)
        body = text.split("\n\n", 1)[1]
        m = re.search(r"\b(\d{4,10})\b", body)
        if not m:
            raise AssertionError("no code in message:\n" + text)
        return m.group(1)

    # --- raw Varlink ---
    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.socket)
        return VarlinkConnection(s)

    def call(self, method, params=None):
        with self.connect() as c:
            return c.call(method, params)


class VarlinkConnection:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv_message(self):
        while b"\0" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None):
        msg = {"method": method}
        if params is not None:
            msg["parameters"] = params
        self.send_raw(json.dumps(msg).encode() + b"\0")
        return self.recv_message()


class TapResult(unittest.TextTestResult):
    """Prints one TAP line per test case so the suite's summary counts real cases."""

    def __init__(self, stream, descriptions, verbosity):
        super().__init__(stream, descriptions, 0)
        self.n = 0

    def _line(self, ok, test, note=""):
        self.n += 1
        # A class or module fixture that failed reports as an _ErrorHolder, which has no method name.
        name = "%s.%s" % (type(test).__name__, test._testMethodName) if hasattr(test, "_testMethodName") else str(test)
        print("%s %d - %s%s" % ("ok" if ok else "not ok", self.n, name, note), flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line(True, test)

    def _why(self, test, err):
        text = self._exc_info_to_string(err, test)
        print("# " + text.replace("\n", "\n# "), flush=True)
        # meson test --print-errorlogs shows a TAP test's stderr, not its
        # stdout: the traceback goes there too, so a CI log says why.
        print("%s failed:\n%s" % (test, text), file=sys.stderr, flush=True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line(False, test)
        self._why(test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._line(False, test)
        self._why(test, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line(True, test, " # SKIP " + reason)


def main():
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromModule(sys.modules["__main__"])
    print("TAP version 13", flush=True)
    print("1..%d" % suite.countTestCases(), flush=True)
    runner = unittest.TextTestRunner(stream=open(os.devnull, "w"), resultclass=TapResult, verbosity=0)
    result = runner.run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)

"""A local peer with no role flooding twofactord: 32 connections pipelining
Otp.Send as nobody. Its denials must cost a bounded amount (no rows per call
in the store, no log line per call) while an operator's calls go on being
answered. Bounds on bytes and rows are asserted, never times."""
import json
import os
import subprocess
import sys
import time
import unittest

import harness

T0 = 1_800_000_000
NOBODY = 65534
FLOODING_OPERATOR = 2001

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[access.operator]
users = ["2001"]

[apps.default]
"""

# Runs as nobody: CONNECTIONS connections, each keeping up to DEPTH calls in
# flight for SECONDS; prints how many replies it got and of what kind.
PEER = r"""
import json, socket, sys, threading, time
path, seconds, connections, depth = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
call = sys.argv[5].encode() + b"\0"
results = {}
lock = threading.Lock()
def run():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    buf = b""
    mine = {}
    deadline = time.time() + seconds
    while time.time() < deadline:
        s.sendall(call * depth)
        got = 0
        while got < depth:
            while b"\0" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise SystemExit("daemon closed the connection")
                buf += chunk
            msg, buf = buf.split(b"\0", 1)
            key = json.loads(msg).get("error", "ok")
            mine[key] = mine.get(key, 0) + 1
            got += 1
    s.close()
    with lock:
        for k, v in mine.items():
            results[k] = results.get(k, 0) + v
threads = [threading.Thread(target=run) for _ in range(connections)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results))
"""


SEND = json.dumps({"method": "io.twofactor.Otp.Send",
                   "parameters": {"app": "default", "destination": "flood@example.org"}})
STATUS = json.dumps({"method": "io.twofactor.Otp.Status", "parameters": {"id": "nosuchrequest"}})


def flood(socket_path, uid, call, seconds=4, connections=32, depth=16):
    def drop():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return subprocess.Popen([sys.executable, "-c", PEER, socket_path, str(seconds), str(connections), str(depth), call],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=drop)


class Flood(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG, clock=T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def store_bytes(self):
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(os.path.join(self.d.state, "twofactor.db" + suffix))
            except FileNotFoundError:
                pass
        return total

    def rss_kib(self):
        with open("/proc/%d/status" % self.d.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def audit(self):
        r = self.d.cli("--json", "audit", "list", "--limit", "100000", "--outcome", "denied")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines()]

    def calls_of(self, uid):
        r = self.d.cli("--json", "calls", "--limit", "100000")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [c for c in map(json.loads, r.stdout.splitlines()) if c["uid"] == uid]

    def test_no_role_flood_costs_a_bounded_amount_and_operators_are_served(self):
        rid = self.d.send("operator@example.org")
        code = self.d.code_for(rid)
        # Settle what the daemon writes at start and for the first send.
        time.sleep(0.5)
        self.d.cli("calls", "--limit", "1")
        store_before = self.store_bytes()
        log_before = len(self.d.read_log().encode())
        denied_before = [r for r in self.audit() if r.get("uid") == NOBODY]

        peer = flood(self.d.socket, NOBODY, SEND)
        # The operator's calls while the flood runs: every one answered, and right.
        operator = []
        for _ in range(10):
            operator.append(self.d.cli("status", rid))
        operator.append(self.d.cli("verify", "--id", rid, "--code", code))
        rss = self.rss_kib()
        out, err = peer.communicate(timeout=120)
        self.assertEqual(peer.returncode, 0, err)
        results = json.loads(out)
        rss = max(rss, self.rss_kib())
        for r in operator:
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("approved", operator[-1].stdout)

        denied = results.get("org.varlink.service.PermissionDenied", 0)
        self.assertEqual(set(results), {"org.varlink.service.PermissionDenied"}, results)
        # The flood was one: 32 connections kept busy for seconds.
        self.assertGreater(denied, 1000, results)

        # Rows: one audit record for the uid's first denial, none per call;
        # no request-log rows for a peer with no role.
        now = [r for r in self.audit() if r.get("uid") == NOBODY]
        new = now[len(denied_before):]
        self.assertEqual(len(new), 1, new)
        self.assertEqual(new[0]["detail"], "io.twofactor.Otp.Send")
        self.assertEqual(self.calls_of(NOBODY), [])

        # Bytes: the store grew by what the operator's few calls wrote (a
        # flood writing per call added ~30 kB per 1,000 denials), the log by
        # one line for the whole flood.
        self.assertLess(self.store_bytes() - store_before, 256 * 1024)
        log = self.d.read_log().encode()[log_before:].decode()
        flood_lines = [line for line in log.splitlines() if "uid %d" % NOBODY in line]
        self.assertEqual(len(flood_lines), 1, flood_lines)
        self.assertLess(len(log.encode()), 4096, log)
        # Memory: nothing queued per denial (a flood once took 0.93 GB).
        self.assertLess(rss, 128 * 1024)

        # When the window ends (the daemon's clock moves on a minute), one
        # record counts the rest of the denials, exactly.
        self.d.set_clock(T0 + 61)
        summary = []
        for _ in range(100):
            summary = [r for r in self.audit() if r.get("uid") == NOBODY][len(now):]
            if summary:
                break
            time.sleep(0.1)
        self.assertEqual(len(summary), 1, summary)
        self.assertRegex(summary[0]["detail"],
                         r"^uid %d: %s denied calls in \d+ s \(last io\.twofactor\.Otp\.Send\)$"
                         % (NOBODY, "{:,}".format(denied - 1)))
        log = self.d.read_log()
        self.assertIn("uid %d: %s more denied calls" % (NOBODY, "{:,}".format(denied - 1)), log)

    def test_one_uid_pipelining_does_not_starve_another(self):
        # An operator floods with store reads; another uid's calls still get
        # their turn: each connection runs one call at a time, so the flooder
        # has at most max_connections_per_uid calls ahead of them.
        rid = self.d.send("fair@example.org")
        code = self.d.code_for(rid)
        peer = flood(self.d.socket, FLOODING_OPERATOR, STATUS)
        answered = [self.d.cli("status", rid) for _ in range(10)]
        answered.append(self.d.cli("verify", "--id", rid, "--code", code))
        rss = self.rss_kib()
        out, err = peer.communicate(timeout=120)
        self.assertEqual(peer.returncode, 0, err)
        results = json.loads(out)
        for r in answered:
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("approved", answered[-1].stdout)
        # Every flooding call was answered, by name: not found, or Busy.
        self.assertLessEqual(set(results), {"io.twofactor.Otp.NoSuchRequest", "io.twofactor.Daemon.Busy"}, results)
        self.assertGreater(sum(results.values()), 1000, results)
        self.assertLess(max(rss, self.rss_kib()), 128 * 1024)

    def test_whoami_and_introspection_write_no_rows(self):
        self.d.cli("calls", "--limit", "1")
        time.sleep(0.3)
        before = len(self.calls_of(os.getuid()))
        for _ in range(50):
            self.assertEqual(self.d.call("io.twofactor.Daemon.WhoAmI")["parameters"]["uid"], os.getuid())
            self.assertIn("interfaces", self.d.call("org.varlink.service.GetInfo")["parameters"])
        time.sleep(0.3)
        # Only the `calls` commands of this test are recorded.
        after = self.calls_of(os.getuid())
        self.assertEqual(len(after) - before, 1, after[before:])
        self.assertEqual({c["method"] for c in after[before:]}, {"io.twofactor.Daemon.RequestLog"})


if __name__ == "__main__":
    harness.main()

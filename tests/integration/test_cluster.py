"""Three twofactord nodes on one throwaway PostgreSQL server: a code sent
through one node verifies through another; concurrent verifies of one code
spread over the nodes approve it once; concurrent wrong codes count exactly
max_attempts and lock it; the database going away gives clear errors and
the nodes recover by themselves; the retention schedule runs once for the
cluster; the server's files (heap and WAL) hold no destination, client
address or code in the clear; outgoing event webhooks of codes verified
through different nodes are each delivered once, signed; the statements
of a call keep the plans they were prepared with; and kill -9 of a node
under load loses no acknowledged send and delivers no code twice."""
import base64
import json
import os
import re
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import harness
from test_email import private, wait_for
from test_events import SECRET, Receiver, signature_ok
from test_http import make_tls

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg"))
import pg_server  # noqa: E402

T0 = 1_800_000_000

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true
store_key_file = "KEYS/store.key"
pepper_file = "KEYS/pepper.key"

[access.admin]
users = ["{uid}"]

[retention]
schedule = "* * * * *"

[apps.default]
max_attempts = 5

[apps.hooked]
channels = ["email"]

[apps.hooked.rate_limits]
resend_cooldown = 0

[apps.capped]
channels = ["email"]

[apps.capped.rate_limits]
resend_cooldown = 0
app_sends = 37

[apps.hooked.events]
url = "https://127.0.0.1:RXPORT/hooked"
secret_file = "KEYS/whsec"
ca_file = "KEYS/tls/ca.pem"
events = ["verification.approved", "verification.failed"]

[store]
backend = "postgresql"
dsn_file = "DSN"
"""


@unittest.skipUnless(pg_server.available(), "PostgreSQL 15 is not installed")
def start_nodes(cls, config, n=3):
    """Starts n nodes on one database into cls.nodes; the first creates the
    keys every node shares, and the schema. On a failure, the class's
    tearDownClass stops what did start."""
    cls.nodes = []
    try:
        for _ in range(n):
            d = harness.Daemon(config=config, clock=T0, fresh_store=False)
            cls.nodes.append(d)
            d.start()
    except Exception:
        cls.tearDownClass()
        raise


class Cluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # pg_stat_statements with its planning counts, for test_m.
        cls.pg = pg_server.Server(
            options="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on").start()
        harness.PG_DSN_FILE = cls.pg.dsn_file
        harness.pg_empty()
        cls.keys = os.path.join(cls.pg.root, "keys")
        os.makedirs(cls.keys, mode=0o700)
        # Every node delivers the events of app hooked to one test endpoint.
        make_tls(os.path.join(cls.keys, "tls"))
        private(os.path.join(cls.keys, "whsec"), "whsec_" + base64.b64encode(SECRET).decode() + "\n")
        cls.rx = Receiver(os.path.join(cls.keys, "tls"))
        threading.Thread(target=cls.rx.serve_forever, daemon=True).start()
        config = (CONFIG.replace("KEYS", cls.keys).replace("DSN", cls.pg.dsn_file)
                  .replace("RXPORT", str(cls.rx.server_address[1])))
        cls.config = config
        start_nodes(cls, config)

    @classmethod
    def tearDownClass(cls):
        for d in cls.nodes:
            d.cleanup()
        cls.rx.shutdown()
        cls.pg.cleanup()

    def clocks(self, t):
        for d in self.nodes:
            d.set_clock(t)

    def send(self, node, to, *extra):
        return node.send(to, "default", *extra)  # prints the request id

    def test_a_code_sent_through_one_node_verifies_through_another(self):
        a, b, c = self.nodes
        rid = self.send(a, "cross@example.org")
        code = a.code_for(rid)
        self.assertEqual(b.cli("status", rid).returncode, 0)
        r = c.cli("verify", "--id", rid, "--code", code)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = a.cli("verify", "--id", rid, "--code", code)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)  # once only, whichever node

    def test_b_concurrent_verifies_over_three_nodes_approve_once(self):
        a = self.nodes[0]
        rid = self.send(a, "race@example.org")
        code = a.code_for(rid)

        def verify(i):
            return self.nodes[i % 3].cli("verify", "--id", rid, "--code", code).returncode

        with ThreadPoolExecutor(max_workers=20) as pool:
            codes = list(pool.map(verify, range(100)))
        self.assertEqual(codes.count(0), 1, codes)
        self.assertEqual(codes.count(1), 99, codes)

    def test_c_concurrent_wrong_codes_count_exactly_max_attempts(self):
        a = self.nodes[0]
        rid = self.send(a, "brute@example.org")
        code = a.code_for(rid)
        wrong = "%06d" % ((int(code) + 1) % 1_000_000)

        def verify(i):
            return self.nodes[i % 3].cli("verify", "--id", rid, "--code", wrong).returncode

        with ThreadPoolExecutor(max_workers=20) as pool:
            codes = list(pool.map(verify, range(60)))
        self.assertNotIn(0, codes)
        status = json.loads(self.nodes[1].cli("--json", "status", rid).stdout)
        status = status.get("request", status)
        self.assertEqual(status["status"], "locked", status)
        self.assertEqual(status["attempts"], 5, status)
        # The right code no longer helps.
        self.assertEqual(self.nodes[2].cli("verify", "--id", rid, "--code", code).returncode, 1)

    def test_c2_an_app_cap_is_exact_across_nodes(self):
        # The app-wide counter is kept in shares on PostgreSQL, so that an
        # app's sends do not queue on one row; the cap stays exact.
        def send(i):
            r = self.nodes[i % 3].cli("send", "--app", "capped", "--to", "cap%d@example.org" % i)
            return r.returncode, r.stderr

        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(send, range(90)))
        codes = [c for c, _ in results]
        self.assertEqual(codes.count(0), 37, results)
        self.assertEqual(codes.count(5), 53, results)
        refused = next(e for c, e in results if c == 5)
        self.assertIn("app", refused)

    def test_d_cluster_status_lists_the_three_nodes(self):
        deadline = time.time() + 15
        while True:
            r = self.nodes[1].cli("--json", "cluster", "status")
            self.assertEqual(r.returncode, 0, r.stderr)
            status = json.loads(r.stdout)
            if len(status["nodes"]) == 3 or time.time() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(status["backend"], "postgresql")
        self.assertEqual(len(status["nodes"]), 3, status)
        self.assertIn(status["self"], [n["id"] for n in status["nodes"]])
        self.assertEqual(len({n["id"] for n in status["nodes"]}), 3)
        text = self.nodes[0].cli("cluster", "status").stdout
        self.assertIn("backend        postgresql", text)

    def test_e_losing_the_database_fails_fast_and_recovers(self):
        a, b, c = self.nodes
        self.pg.pause()
        try:
            r = b.cli("send", "--app", "default", "--to", "down@example.org")
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            self.assertIn("unreachable", r.stderr)
            self.assertLess(len(r.stderr.strip().splitlines()), 3, r.stderr)
        finally:
            self.pg.resume()
        # No node restarted: each connects again for its next work.
        for i, node in enumerate((a, b, c)):
            deadline = time.time() + 10
            while True:
                r = node.cli("send", "--app", "default", "--to", "back-%d@example.org" % i)
                if r.returncode == 0 or time.time() > deadline:
                    break
                time.sleep(0.3)
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_f_retention_scheduled_every_minute_runs_once_per_minute(self):
        before = int(harness.pg_query("SELECT count(*) FROM retention_runs WHERE trigger = 'schedule'"))
        # Past the next minute on every node: each sees the run due; one takes it.
        t = (T0 // 60 + 2) * 60 + 5
        self.clocks(t)
        deadline = time.time() + 20
        while time.time() < deadline:
            n = int(harness.pg_query("SELECT count(*) FROM retention_runs WHERE trigger = 'schedule'"))
            if n > before:
                break
            time.sleep(0.3)
        time.sleep(3)  # the other nodes' ticks have seen the same minute by now
        after = int(harness.pg_query("SELECT count(*) FROM retention_runs WHERE trigger = 'schedule'"))
        self.assertEqual(after - before, 1)
        lease = harness.pg_query("SELECT holder FROM leases WHERE name = 'retention'")
        self.assertIn(lease, [json.loads(self.nodes[0].cli("--json", "cluster", "status").stdout)["nodes"][i]["id"]
                              for i in range(3)])

    def test_g_the_data_directory_holds_no_plaintext(self):
        a, b, c = self.nodes
        secret_to = "plaintext.scan.marker@example.org"
        secret_ip = "198.51.100.237"
        rid = self.send(a, secret_to, "--ip", secret_ip)
        code = a.code_for(rid)
        wrong = "%06d" % ((int(code) + 1) % 1_000_000)
        b.cli("verify", "--id", rid, "--code", wrong)
        self.assertEqual(c.cli("verify", "--id", rid, "--code", code).returncode, 0)
        harness.pg_query("CHECKPOINT")
        # Codes are short: matched only as a number of their own (integers are
        # stored binary, so a code's digits in the clear would stand alone).
        needles = [re.compile(re.escape(secret_to.encode())), re.compile(re.escape(secret_ip.encode())),
                   re.compile(rb"(?<![0-9])" + code.encode() + rb"(?![0-9])"),
                   re.compile(rb"(?<![0-9])" + wrong.encode() + rb"(?![0-9])")]
        found, scanned = [], 0
        for sub in ("base", "global", "pg_wal"):
            for root, _, files in os.walk(os.path.join(self.pg.data, sub)):
                for name in files:
                    with open(os.path.join(root, name), "rb") as f:
                        data = f.read()
                    scanned += len(data)
                    for n in needles:
                        if n.search(data):
                            found.append((n.pattern, os.path.join(root, name)))
        self.assertGreater(scanned, 1_000_000)
        self.assertEqual(found, [])
        # The request itself is there, sealed: found by id, its destination bytes opaque.
        self.assertEqual(harness.pg_query("SELECT count(*) FROM requests WHERE id = '%s'" % rid), "1")

    def test_h_events_of_codes_verified_through_other_nodes_are_delivered_once_signed(self):
        sent = []  # (request id, a wrong code was given first)
        for i in range(12):
            node = self.nodes[i % 3]
            rid = node.send("hook-%d@example.org" % i, "hooked")
            code = node.code_for(rid)
            wrong = i % 4 == 0
            if wrong:
                bad = "%06d" % ((int(code) + 1) % 1_000_000)
                self.assertEqual(self.nodes[(i + 2) % 3].cli("verify", "--id", rid, "--code", bad).returncode, 1)
            r = self.nodes[(i + 1) % 3].cli("verify", "--id", rid, "--code", code)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
            sent.append((rid, wrong))
        expected = len(sent) + sum(1 for _, wrong in sent if wrong)

        def received():
            with self.rx.lock:
                return [(h, b, json.loads(b)) for p, h, b in self.rx.received if p == "/hooked"]

        def settled():
            # Every event arrived and none is left in the shared queue to come again.
            return (len(received()) >= expected and
                    harness.pg_query("SELECT count(*) FROM event_jobs") == "0" and received())

        got = wait_for(settled, 30)
        self.assertTrue(got, "events: %d of %d; queue: %s" % (len(received()), expected,
                                                              harness.pg_query("SELECT count(*) FROM event_jobs")))
        self.assertEqual(len(got), expected, [e["type"] for _, _, e in got])
        ids = [h["webhook-id"] for h, _, _ in got]
        self.assertEqual(len(set(ids)), len(ids))  # each event once, whichever node delivered it
        for headers, body, _ in got:
            self.assertTrue(signature_ok(headers, body), headers)
        for rid, wrong in sent:
            types = sorted(e["type"] for _, _, e in got if e["data"]["id"] == rid)
            self.assertEqual(types, ["verification.approved"] + (["verification.failed"] if wrong else []), rid)
        # Each delivery is in the shared attempt log, which any node shows.
        r = self.nodes[2].cli("--json", "events", "deliveries", "--app", "hooked")
        self.assertEqual(r.returncode, 0, r.stderr)
        attempts = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        self.assertEqual(sorted(a["eventId"] for a in attempts if a.get("outcome") == "delivered"), sorted(ids))


    def test_i_backup_is_refused_and_key_rotate_reseals_while_the_cluster_serves(self):
        a, b, c = self.nodes
        target = os.path.join(self.pg.root, "backup.db")
        r = a.cli("backup", "-o", target)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        for word in ("pg_dump", "pg_basebackup", os.path.join(self.keys, "store.key"),
                     os.path.join(self.keys, "pepper.key")):
            self.assertIn(word, r.stderr)
        self.assertFalse(os.path.exists(target))

        before = self.send(b, "before-rotation@example.org")
        r = a.cli("key", "rotate")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(harness.pg_query("SELECT count(*) FROM seal_keys"), "2")
        # Every sealed value is under version 2 now: the first byte of each.
        old = harness.pg_query("SELECT count(*) FROM requests WHERE octet_length(destination) > 0 "
                               "AND CASE WHEN octet_length(destination) > 0 THEN get_byte(destination, 0) <> 2 END")
        self.assertEqual(old, "0")
        self.assertTrue(os.path.exists(os.path.join(self.keys, "store.key.previous")))
        # cluster status tells the nodes apart: the rotated one seals under key 2, the others under 1.
        versions = self.key_versions(lambda v: sorted(v.values()) == [1, 1, 2])
        self.assertEqual(versions[self.node_id(a)], 2, versions)
        text = b.cli("cluster", "status").stdout
        self.assertIn("key 2, started", text)
        self.assertIn("the nodes seal under different store keys (versions 1, 2): restart those below 2", text)
        # A node still holding only the old key serves on; the rotated node opens what it seals.
        meanwhile = self.send(c, "during-rotation@example.org")
        r = a.cli("verify", "--id", meanwhile, "--code", c.code_for(meanwhile))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
        # Restarted with the new key (and the old one kept), the others open the resealed rows too.
        for node in (b, c):
            node.stop()
            node.start()
        r = c.cli("verify", "--id", before, "--code", b.code_for(before))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
        after = self.send(c, "after-rotation@example.org")
        r = b.cli("verify", "--id", after, "--code", c.code_for(after))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
        # Restarted, every node seals under key 2, and the warning is gone.
        self.key_versions(lambda v: sorted(v.values()) == [2, 2, 2])
        self.assertNotIn("different store keys", a.cli("cluster", "status").stdout)

    def node_id(self, node):
        return json.loads(node.cli("--json", "cluster", "status").stdout)["self"]

    def key_versions(self, wanted):
        """{node id: keyVersion} of the live nodes once `wanted` holds for it (15 s at most)."""
        live = {self.node_id(n) for n in self.nodes}
        deadline = time.time() + 15
        while True:
            status = json.loads(self.nodes[0].cli("--json", "cluster", "status").stdout)
            versions = {n["id"]: n.get("keyVersion") for n in status["nodes"] if n["id"] in live}
            if wanted(versions) or time.time() > deadline:
                self.assertTrue(wanted(versions), versions)
                return versions
            time.sleep(0.5)


    def test_j_a_rotation_keeps_the_old_key_first_and_a_start_completes_an_interrupted_one(self):
        a, b, c = self.nodes
        key = os.path.join(self.keys, "store.key")
        previous, pending = key + ".previous", key + ".new"
        with open(key) as f:
            new_key = f.read()
        with open(previous) as f:
            kept = f.read()
        # .previous cannot be written: the rotation stops before anything changed.
        os.rename(previous, previous + ".aside")
        os.mkdir(previous)
        try:
            r = a.cli("key", "rotate")
        finally:
            os.rmdir(previous)
            os.rename(previous + ".aside", previous)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn(previous, r.stderr)
        self.assertIn("nothing was changed", r.stderr)
        self.assertEqual(harness.pg_query("SELECT count(*) FROM seal_keys"), "2")
        self.assertFalse(os.path.exists(pending))
        with open(key) as f:
            self.assertEqual(f.read(), new_key)

        # A rotation that registered its key and stopped before the rename:
        # the key file still holds the old key, .new the one values are sealed under.
        sealed = self.send(a, "interrupted@example.org")
        b.stop()
        private(key, kept.splitlines()[0] + "\n")
        private(pending, new_key)
        b.start()
        self.assertFalse(os.path.exists(pending))
        with open(key) as f:
            self.assertEqual(f.read(), new_key)
        with open(previous) as f:
            self.assertEqual(f.read(), kept)  # the old key once, not twice
        self.assertIn("completed an interrupted key rotation", b.read_log())
        r = b.cli("verify", "--id", sealed, "--code", a.code_for(sealed))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)

        # A key the database never registered sealed nothing: it goes.
        b.stop()
        private(pending, "%064x\n" % 0x5EED)
        b.start()
        self.assertFalse(os.path.exists(pending))
        with open(key) as f:
            self.assertEqual(f.read(), new_key)
        self.assertIn("never registered its key", b.read_log())
        self.assertEqual(b.cli("status", sealed).returncode, 0)

    def test_l_a_node_stopped_cleanly_leaves_cluster_status_at_once(self):
        extra = harness.Daemon(config=self.config, clock=T0, fresh_store=False)
        extra.start()
        try:
            gone = self.node_id(extra)
            listed = [n["id"] for n in json.loads(self.nodes[0].cli("--json", "cluster", "status").stdout)["nodes"]]
            self.assertIn(gone, listed)
            extra.stop()
            listed = [n["id"] for n in json.loads(self.nodes[0].cli("--json", "cluster", "status").stdout)["nodes"]]
            self.assertNotIn(gone, listed)
        finally:
            extra.cleanup()

    def test_m_statements_of_a_call_run_on_the_plan_they_were_prepared_with(self):
        # A prepared statement whose generic plan looks dearer than a custom
        # one is planned again at every call (one UPDATE over unnest() of its
        # parameters was, at more server time than it took to run). Each
        # connection plans a statement up to 6 times (5 custom plans, then
        # the generic one), 72 on the nodes' 12 connections; a statement run
        # for each of these pairs must not be planned for most of its calls.
        pairs = 200
        harness.pg_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        harness.pg_query("SELECT pg_stat_statements_reset()")

        def pair(i):
            node = self.nodes[i % 3]
            rid = self.send(node, "plan%d@example.org" % i)
            return self.nodes[(i + 1) % 3].cli("verify", "--id", rid, "--code", node.code_for(rid))

        with ThreadPoolExecutor(max_workers=12) as pool:
            for r in pool.map(pair, range(pairs)):
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows = [r.split("|", 2) for r in harness.pg_query(
            "SELECT calls, plans, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls >= %d "
            "ORDER BY calls DESC" % pairs).splitlines()]
        self.assertTrue(any("INSERT INTO requests" in q for _, _, q in rows), rows)  # the view saw the pairs
        replanned = ["%s calls, %s plans: %s" % (c, p, q) for c, p, q in rows if int(p) > pairs // 2]
        self.assertEqual(replanned, [], "\n".join(replanned))

    def test_k_the_audit_log_of_every_node_verifies_as_one_set_of_chains(self):
        # Audited commits of all nodes run side by side, each on a chain no
        # other open transaction holds; `audit verify` walks them all.
        a, b, c = self.nodes
        rid = self.send(a, "audit@example.org")
        wrong = "%06d" % ((int(a.code_for(rid)) + 1) % 1_000_000)

        def verify(i):
            return self.nodes[i % 3].cli("verify", "--id", rid, "--code", wrong).returncode

        with ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(verify, range(24)))
        out = json.loads(c.cli("--json", "audit", "verify").stdout)
        self.assertTrue(out["ok"], out)
        chains = out["chains"]
        self.assertGreaterEqual(len(chains), 2, "concurrent audited commits shared one chain: %s" % chains)
        self.assertEqual(sum(ch["records"] for ch in chains), out["records"])
        for ch in chains:
            self.assertEqual(ch["lastSeq"] - ch["firstSeq"] + 1, ch["records"], ch)
        exported = [json.loads(line) for line in b.cli("audit", "export").stdout.splitlines()]
        self.assertEqual(len(exported), out["records"])
        self.assertEqual({r["chain"] for r in exported}, {ch["chain"] for ch in chains})
        times = [r["time"] for r in exported]
        self.assertEqual(times, sorted(times), "exported by time across chains")
        text = b.cli("audit", "verify").stdout
        self.assertIn("in %d chains" % len(chains), text)

        # Every chain's head, taken on one node, verified on another, and
        # found short when a chain's tail is cut with the database's password.
        r = a.cli("audit", "checkpoint")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("chain "), len(chains))
        path = os.path.join(self.pg.root, "audit-checkpoint")
        with open(path, "w") as f:
            f.write(r.stdout)
        r = b.cli("audit", "verify", "--checkpoint", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("checkpoint of %d chains matches" % len(chains), r.stdout)
        last = max(chains, key=lambda ch: ch["chain"])
        harness.pg_query("DELETE FROM audit WHERE chain = %d AND seq = %d; %s"
                         % (last["chain"], last["lastSeq"], harness.pg_audit_rehead(last["chain"])))
        self.assertEqual(b.cli("audit", "verify").returncode, 0)  # the chains alone cannot tell
        r = b.cli("audit", "verify", "--checkpoint", path)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("of chain %d" % last["chain"], r.stdout)


KILL_CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true
store_key_file = "KEYS/store.key"
pepper_file = "KEYS/pepper.key"

[access.admin]
users = ["{uid}"]

[delivery]
email = "ses"

[ses]
region = "eu-west-1"
endpoint = "http://127.0.0.1:PORT"
from = "Shop <no-reply@shop.example>"
access_key_id_file = "KEYS/aws-id"
secret_access_key_file = "KEYS/aws-secret"
timeout = 15

[retry]
send_wait = 30

[apps.shop]
channels = ["email"]

[apps.shop.rate_limits]
resend_cooldown = 0
app_sends = 100000

[store]
backend = "postgresql"
dsn_file = "DSN"
"""


@unittest.skipUnless(pg_server.available(), "PostgreSQL 15 is not installed")
class KillNine(unittest.TestCase):
    """kill -9 of one node of three under a mixed load of sends and verifies,
    delivering through SES (the mock records every message it was given): no
    code reaches the mock twice, the code valid now of every acknowledged
    send reached it exactly once, and the dead node's jobs are taken over by
    the survivors once its leases run out."""

    @classmethod
    def setUpClass(cls):
        from test_email import SRC, start_mock, stop_mock
        cls.stop_mock = staticmethod(stop_mock)
        cls.pg = pg_server.Server().start()
        harness.PG_DSN_FILE = cls.pg.dsn_file
        cls.keys = os.path.join(cls.pg.root, "keys")
        os.makedirs(cls.keys, mode=0o700)
        creds = os.path.join(cls.keys, "creds.json")
        with open(creds, "w") as f:
            json.dump([{"accessKeyId": "AKIDTWOFACTOR", "secretAccessKey": "s3cr3t/Key+Example"}], f)
        private(os.path.join(cls.keys, "aws-id"), "AKIDTWOFACTOR\n")
        private(os.path.join(cls.keys, "aws-secret"), "s3cr3t/Key+Example\n")
        cls.log = os.path.join(cls.keys, "ses.jsonl")
        port_file = os.path.join(cls.keys, "port")
        cls.mock, port = start_mock([os.path.join(SRC, "tests/mock/ses_server.py"), "--port-file", port_file,
                                     "--log", cls.log, "--credentials", creds, "--slow-seconds", "4"], port_file)
        config = (KILL_CONFIG.replace("KEYS", cls.keys).replace("DSN", cls.pg.dsn_file)
                  .replace("PORT", str(port)))
        cls.now = T0
        start_nodes(cls, config)

    @classmethod
    def tearDownClass(cls):
        for d in cls.nodes:
            d.cleanup()
        cls.stop_mock(cls.mock)
        cls.pg.cleanup()

    def delivered(self):
        """address -> the codes the mock accepted for it, in order."""
        out = {}
        if os.path.exists(self.log):
            with open(self.log) as f:
                for line in f:
                    entry = json.loads(line)
                    if entry.get("status") != 200:
                        continue
                    doc = entry["json"]
                    text = doc["Content"]["Simple"]["Body"]["Text"]["Data"]
                    out.setdefault(doc["Destination"]["ToAddresses"][0], []).append(
                        re.search(r"\b(\d{6})\b", text).group(1))
        return out

    def test_kill_9_under_load_loses_nothing_and_delivers_each_code_once(self):
        victim, *survivors = self.nodes
        victim_id = json.loads(victim.cli("--json", "cluster", "status").stdout)["self"]
        lock = threading.Lock()
        acked = {}  # address -> request id, for every send answered with an id
        verified = set()
        unanswered = set()  # verifies the killed node took and never answered
        killed = threading.Event()
        counter = iter(range(1_000_000))

        def live():
            return survivors if killed.is_set() else self.nodes

        def one(worker):
            n = next(counter)
            nodes = live()
            node = nodes[n % len(nodes)]
            address = "load-%d-%d@example.org" % (worker, n)
            kind = n % 4
            if kind == 3:
                # A verify, through another node, of a code the mock received.
                with lock:
                    candidates = [(a, r) for a, r in acked.items() if r not in verified]
                codes = self.delivered()
                for a, rid in candidates:
                    if a in codes:
                        other = nodes[(n + 1) % len(nodes)]
                        r = other.cli("verify", "--id", rid, "--code", codes[a][-1])
                        if r.returncode == 0:
                            with lock:
                                verified.add(rid)
                        elif r.returncode != 1:
                            # No answer (the node was killed during the call): it may
                            # have approved and committed before it died.
                            with lock:
                                unanswered.add(rid)
                        return
                return
            args = ["--json", "send", "--app", "shop", "--to", address] + (["--no-wait"] if kind == 2 else [])
            r = node.cli(*args)
            if r.returncode == 0:
                with lock:
                    acked[address] = json.loads(r.stdout)["request"]["id"]

        def worker(w, stop):
            while not stop.is_set():
                one(w)

        stop = threading.Event()
        threads = [threading.Thread(target=worker, args=(w, stop)) for w in range(6)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(acked) >= 24, 120)
            # Deliveries the victim has with the provider at this very moment.
            slow = {}  # kept from the load's verifies: their first code must be the one taken over
            for i in range(4):
                r = victim.cli("--json", "send", "--app", "shop", "--to", "slow+k%d@example.org" % i, "--no-wait")
                self.assertEqual(r.returncode, 0, r.stderr)
                slow["slow+k%d@example.org" % i] = json.loads(r.stdout)["request"]["id"]
            self.assertTrue(wait_for(lambda: all(a in self.delivered() for a in slow), 20))
            killed.set()
            victim.proc.kill()  # SIGKILL: no shutdown, no lease given back
            victim.proc.wait()
            before = len(acked)
            wait_for(lambda: len(acked) >= before + 24, 120)
        finally:
            stop.set()
            for t in threads:
                t.join()
        acked.update(slow)

        # The survivors finish their own jobs; the victim's stay leased to it.
        def only_victims_left():
            return harness.pg_query("SELECT count(*) FROM delivery_jobs WHERE holder <> '%s'" % victim_id) == "0"
        self.assertTrue(wait_for(only_victims_left, 60))
        orphaned = int(harness.pg_query("SELECT count(*) FROM delivery_jobs"))
        self.assertGreaterEqual(orphaned, len(slow))
        # Past the dead node's leases (30 s): the survivors take its jobs over.
        for d in survivors:
            d.set_clock(T0 + 45)
        self.assertTrue(wait_for(lambda: harness.pg_query("SELECT count(*) FROM delivery_jobs") == "0", 60),
                        harness.pg_query("SELECT request_id, holder, attempts, last_error FROM delivery_jobs"))
        survivor_log = survivors[0].read_log() + survivors[1].read_log()
        self.assertIn("delivery taken over", survivor_log)

        codes = self.delivered()
        every = [c for cs in codes.values() for c in cs]
        self.assertEqual(len(every), len(set(every)), "a code reached the provider twice")
        self.assertGreater(len(acked), 48)
        for address, rid in acked.items():
            self.assertIn(address, codes, "acknowledged request %s was never delivered" % rid)
            status = json.loads(survivors[0].cli("--json", "status", rid).stdout)
            status = status.get("request", status)
            # One message per send at most (a send the victim never got to is replaced, not sent).
            self.assertLessEqual(len(codes[address]), status["sends"], (address, status))
            if rid in verified:
                self.assertEqual(status["status"], "approved")
                continue
            if rid in unanswered and status["status"] == "approved":
                continue
            self.assertEqual(status["status"], "pending", (address, status))
            # The code valid now is the last one the provider got: it verifies, once.
            r = survivors[1].cli("verify", "--id", rid, "--code", codes[address][-1])
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), (address, r.stderr))
        for address in slow:
            self.assertEqual(len(codes[address]), 2, address)  # the victim's send, then the survivor's
        print("# %d sends acknowledged, %d verified under load, %d jobs of the killed node taken over, "
              "%d messages at the provider" % (len(acked), len(verified), orphaned, len(every)), flush=True)


class SingleNode(unittest.TestCase):
    """On SQLCipher, cluster status shows the one local daemon and no foreign lease."""

    def test_cluster_status_shows_the_local_node(self):
        d = harness.Daemon(config='[daemon]\nstate_dir = "{root}/state"\ngenerate_keys = true\n'
                                  '[access.admin]\nusers = ["{uid}"]\n[apps.default]\n', clock=T0).start()
        try:
            deadline = time.time() + 10
            while True:
                r = d.cli("--json", "cluster", "status")
                self.assertEqual(r.returncode, 0, r.stderr)
                status = json.loads(r.stdout)
                if status["nodes"] or time.time() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual(status["backend"], "sqlcipher")
            self.assertEqual([n["id"] for n in status["nodes"]], [status["self"]])
            self.assertEqual(status["leases"], [])
            self.assertEqual(status["queuedJobs"], 0)
            self.assertIn("nodes          1", d.cli("cluster", "status").stdout)
        finally:
            d.cleanup()


if __name__ == "__main__":
    harness.main()

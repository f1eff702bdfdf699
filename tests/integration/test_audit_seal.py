"""Tamper evidence of the audit log through the real twofactord and twofactor:
retention's cuts leave an anchor sealed with the audit key, so one forged
with only the database key (opened with the sqlcipher CLI, as an intruder
holding the store key would) is reported by `audit verify`; a checkpoint kept
outside proves that no record up to it was cut, from the head or the end.
On PostgreSQL (TWOFACTOR_TEST_PG_DSN_FILE) the same, with psql as the intruder:
one daemon calling one at a time appends to chain 0 only."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import harness

T0 = 1_800_000_000  # 2027-01-15 08:00:00 UTC
DAY = 86400
SQLCIPHER = shutil.which("sqlcipher") or "/usr/bin/sqlcipher"

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[retention]
schedule = "0 0 1 6 *"

[apps.default]
"""


def store_key(d):
    with open(os.path.join(d.state, "keys", "store.key")) as f:
        return f.read().strip()


def sql(d, text, pg=None):
    """Runs SQL on the daemon's database with the store key alone, as the daemon's
    own tables and triggers allow anyone holding that key to; on PostgreSQL,
    `pg` (the same change to chain 0) with the database's password."""
    if harness.BACKEND == "postgresql":
        return harness.pg_query(pg)
    script = "PRAGMA key = \"x'%s'\";\nPRAGMA cipher_page_size = 4096;\n%s\n" % (store_key(d), text)
    r = subprocess.run([SQLCIPHER, os.path.join(d.state, "twofactor.db")], input=script, capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0 or "Error" in r.stderr:
        raise AssertionError("sqlcipher failed: " + r.stderr)
    return r.stdout.strip()


def records(d):
    r = d.cli("--json", "audit", "list")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


class Seal(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon(config=CONFIG, clock=T0).start()

    def tearDown(self):
        self.d.cleanup()

    def verify(self, *extra):
        return self.d.cli("audit", "verify", *extra)

    def cut_by_retention(self):
        d = self.d
        for i in range(3):
            d.send("old%d@example.org" % i)
        d.set_clock(T0 + 400 * DAY)
        for i in range(3):
            d.send("new%d@example.org" % i)
        r = d.cli("--json", "retention", "run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(json.loads(r.stdout)["counts"]["auditRecords"], 4)

    def test_retention_cut_is_sealed_and_a_forged_anchor_is_reported(self):
        d = self.d
        self.cut_by_retention()
        r = self.verify()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("cut by retention, sealed", r.stdout)
        before = json.loads(d.cli("--json", "audit", "verify").stdout)
        self.assertTrue(before["anchorSealed"])

        # With the database key only: cut two more records off the head and
        # write the anchor the store would have written, keeping the old seal.
        kept = records(d)
        cut = kept[1]
        d.stop()
        sql(d, "UPDATE audit_gate SET prune_before = %d; DELETE FROM audit WHERE seq <= %d; "
               "UPDATE audit_gate SET prune_before = 0, anchor_seq = %d, anchor_hash = '%s';"
            % (cut["seq"], cut["seq"], cut["seq"], cut["hash"]),
            "DELETE FROM audit WHERE chain = 0 AND seq <= %d; "
            "UPDATE audit_chains SET anchor_seq = %d, anchor_hash = '%s' WHERE chain = 0"
            % (cut["seq"], cut["seq"], cut["hash"]))
        d.start()
        r = self.verify()
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("seal does not verify", r.stdout)
        out = json.loads(d.cli("--json", "audit", "verify").stdout)
        self.assertFalse(out["ok"])
        self.assertFalse(out["anchorSealed"])

        # An anchor without any seal is reported too, and retention does not
        # cut on from it (a sealed cut would launder the forgery).
        d.stop()
        sql(d, "UPDATE audit_gate SET anchor_seal = '';", "UPDATE audit_chains SET anchor_seal = '' WHERE chain = 0")
        d.start()
        r = self.verify()
        self.assertEqual(r.returncode, 1)
        self.assertIn("no seal", r.stdout)
        d.set_clock(T0 + 800 * DAY)
        r = d.cli("--json", "retention", "run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["counts"]["auditRecords"], 0)
        self.assertIn("audit records are not pruned", d.read_log())

    def test_anchor_from_before_sealing_is_adopted_in_the_open(self):
        d = self.d
        self.cut_by_retention()
        anchor_seq = json.loads(d.cli("--json", "audit", "verify").stdout)["firstSeq"] - 1
        d.stop()
        # What the migration leaves of an anchor an earlier version wrote.
        sql(d, "UPDATE audit_gate SET anchor_seal = 'legacy', anchor_at = 0;",
            "UPDATE audit_chains SET anchor_seal = 'legacy', anchor_at = 0 WHERE chain = 0")
        d.start()
        self.assertEqual(self.verify().returncode, 0)
        adopted = [r for r in records(d) if r["event"] == "audit-anchor"]
        self.assertEqual(len(adopted), 1)
        self.assertIn("seq %d" % anchor_seq, adopted[0]["detail"])
        self.assertIn("sealed as found", d.read_log())
        d.stop()
        d.start()
        self.assertEqual(len([r for r in records(d) if r["event"] == "audit-anchor"]), 1, "adopted once only")


class Checkpoint(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon(config=CONFIG, clock=T0).start()
        self.tmp = tempfile.mkdtemp(prefix="twofactor-checkpoint-")

    def tearDown(self):
        self.d.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def checkpoint(self, *extra):
        r = self.d.cli(*extra, "audit", "checkpoint")
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(self.tmp, "cp%d" % len(os.listdir(self.tmp)))
        with open(path, "w") as f:
            f.write(r.stdout)
        return path, r.stdout

    def test_checkpoint_text_and_json_and_a_cut_tail(self):
        d = self.d
        for i in range(3):
            d.send("user%d@example.org" % i)
        text_file, text = self.checkpoint()
        json_file, js = self.checkpoint("--json")
        head = records(d)[-1]
        # SQLCipher has one writer, so one chain: chain 0.
        self.assertEqual(head["chain"], 0)
        self.assertEqual(text.splitlines(), ["chain 0", "seq %d" % head["seq"], "hash %s" % head["hash"],
                                             "time 2027-01-15T08:00:00Z"])
        self.assertEqual(json.loads(js), {"heads": [{"chain": 0, "seq": head["seq"], "hash": head["hash"],
                                                     "time": head["time"]}]})
        # What `audit checkpoint` printed before there were chains still reads as chain 0's head.
        old_text = os.path.join(self.tmp, "old-text")
        with open(old_text, "w") as f:
            f.write("seq %d\nhash %s\ntime %d\n" % (head["seq"], head["hash"], head["time"]))
        old_json = os.path.join(self.tmp, "old-json")
        with open(old_json, "w") as f:
            json.dump({"seq": head["seq"], "hash": head["hash"], "time": head["time"]}, f)
        d.send("later@example.org")
        for f in (text_file, json_file, old_text, old_json):
            r = d.cli("audit", "verify", "--checkpoint", f)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("checkpoint seq %d matches" % head["seq"], r.stdout)

        # Records cut from the end, the checkpoint's among them: the chain alone
        # cannot tell, the checkpoint can.
        d.stop()
        sql(d, "UPDATE audit_gate SET prune_before = 1000000; DELETE FROM audit WHERE seq >= %d; "
               "UPDATE audit_gate SET prune_before = 0;" % (head["seq"] - 1),
            "DELETE FROM audit WHERE chain = 0 AND seq >= %d; %s" % (head["seq"] - 1, harness.pg_audit_rehead(0)))
        d.start()
        self.assertEqual(d.cli("audit", "verify").returncode, 0)
        r = d.cli("audit", "verify", "--checkpoint", text_file)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("checkpoint", r.stdout)
        out = json.loads(d.cli("--json", "audit", "verify", "--checkpoint", json_file).stdout)
        self.assertFalse(out["ok"])
        self.assertEqual(out["checkpoint"], "failed")

    def test_bad_checkpoint_files_are_refused_with_a_reason(self):
        d = self.d
        missing = os.path.join(self.tmp, "none")
        r = d.cli("audit", "verify", "--checkpoint", missing)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr)
        bad = os.path.join(self.tmp, "bad")
        for content, reason in (("seq 3\nhash xyz\ntime 1800000000\n", "hash"),
                                ("seq 3\ntime 1800000000\n", "no hash"),
                                ("seq three\n", "seq"),
                                ("{\"seq\": 1}", "lacks"),
                                ("chain x\nseq 3\n", "chain 'x'"),
                                ("chain 1\nseq 3\nhash %s\ntime 1800000000\nchain 2\nseq 1\n" % ("a" * 64),
                                 "chain 2: no hash"),
                                ("chain 1\nseq 3\nhash %s\ntime 1800000000\n" % ("a" * 64) * 2, "named twice"),
                                ("{\"heads\": []}", "heads")):
            with open(bad, "w") as f:
                f.write(content)
            r = d.cli("audit", "verify", "--checkpoint", bad)
            self.assertEqual(r.returncode, 2, content)
            self.assertIn(reason, r.stderr)


if __name__ == "__main__":
    harness.main()

"""Key rotation and backup through the real twofactord and twofactor (issue 5):
`twofactor key rotate` and `twofactor backup -o FILE [--force]`
(io.twofactor.Maintenance, admin only), checked from outside with Debian's
sqlcipher CLI: which key opens the database, integrity_check, the rows."""
import hashlib
import json
import os
import pty
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

import harness
import sqlcipher_scan

SQLCIPHER = shutil.which("sqlcipher") or "/usr/bin/sqlcipher"
NOBODY = 65534

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[apps.default]
"""


def sqlcipher(db, key, sql, page_size=4096):
    """Runs SQL on `db` opened with `key` (hex) and the store's cipher page
    size; returns (exit status, stdout, stderr)."""
    script = "PRAGMA key = \"x'%s'\";\nPRAGMA cipher_page_size = %d;\n%s\n" % (key, page_size, sql)
    r = subprocess.run([SQLCIPHER, db], input=script, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def opens(db, key):
    rc, out, err = sqlcipher(db, key, "SELECT count(*) FROM sqlite_master;")
    return rc == 0 and not err and out.isdigit()


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Base(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon(config=CONFIG).start()
        self.db = os.path.join(self.d.state, "twofactor.db")
        self.key_file = os.path.join(self.d.state, "keys", "store.key")
        self.out = tempfile.mkdtemp(prefix="twofactor-backup-")

    def tearDown(self):
        self.d.cleanup()
        shutil.rmtree(self.out, ignore_errors=True)

    def key(self):
        with open(self.key_file) as f:
            return f.read().strip()

    def send_and_verify(self, to):
        rid = self.d.send(to)
        r = self.d.cli("verify", "--id", rid, "--code", self.d.code_for(rid))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
        return rid

    def audit(self, event):
        r = self.d.cli("--json", "audit", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [rec for rec in map(json.loads, r.stdout.splitlines()) if rec["event"] == event]

    def assert_no_secrets_in_log_or_audit(self, *secrets):
        log = self.d.read_log()
        audit = self.d.cli("--json", "audit", "list").stdout
        for s in secrets:
            self.assertNotIn(s, log)
            self.assertNotIn(s, audit)


class KeyRotation(Base):
    def test_rotate_rekeys_verifies_and_replaces_the_key_file(self):
        d = self.d
        before = d.send("before@example.org")
        code_before = d.code_for(before)
        old = self.key()

        r = d.cli("key", "rotate")
        self.assertEqual(r.returncode, 0, r.stderr + d.read_log())
        self.assertIn("old key no longer opens the database", r.stdout)
        new = self.key()
        self.assertNotEqual(new, old)
        self.assertEqual(len(new), 64)
        self.assertEqual(stat.S_IMODE(os.stat(self.key_file).st_mode), 0o600)
        self.assertFalse(os.path.exists(self.key_file + ".new"))

        # The daemon goes on serving: old rows are readable, new ones are written.
        r = d.cli("verify", "--id", before, "--code", code_before)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
        self.send_and_verify("after@example.org")
        records = self.audit("key-rotation")
        self.assertEqual([rec["outcome"] for rec in records], ["success"])
        self.assertEqual(records[0]["uid"], os.getuid())
        self.assert_no_secrets_in_log_or_audit(old, new)

        # Read from outside while the daemon has it open (WAL): only the new key works.
        self.assertTrue(opens(self.db, new))
        self.assertFalse(opens(self.db, old))

        d.stop()
        self.assertEqual(sqlcipher(self.db, new, "PRAGMA integrity_check;")[1], "ok")
        self.assertEqual(sqlcipher(self.db, new, "SELECT count(*) FROM requests;")[1], "2")
        rc, out, err = sqlcipher(self.db, old, "SELECT count(*) FROM requests;")
        self.assertIn("not a database", err)

        d.start()
        self.send_and_verify("restarted@example.org")
        # A second rotation after the restart works as well.
        r = d.cli("--json", "key", "rotate")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["keyFile"], self.key_file)
        self.assertNotEqual(self.key(), new)
        self.assertFalse(opens(self.db, new))
        self.assertTrue(opens(self.db, self.key()))

    def test_wrong_role_is_refused(self):
        old = self.key()
        r = self.d.cli("key", "rotate", user=NOBODY)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("permission denied", r.stderr)
        self.assertEqual(self.key(), old)
        self.assertTrue(opens(self.db, old))

    def test_failed_rotation_keeps_the_old_key_and_says_so(self):
        d = self.d
        old = self.key()
        # Another process holding the database open keeps it in WAL mode, which
        # SQLCipher 3 cannot rekey in: the rotation must fail cleanly.
        # (stdbuf: the sqlite shell buffers its output on a pipe, and the answer is awaited.)
        holder = subprocess.Popen(["stdbuf", "-oL", SQLCIPHER, self.db], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            holder.stdin.write("PRAGMA key = \"x'%s'\";\nPRAGMA cipher_page_size = 4096;\nSELECT count(*) FROM sqlite_master;\n" % old)
            holder.stdin.flush()
            self.assertTrue(holder.stdout.readline().strip().isdigit())
            r = d.cli("key", "rotate")
            self.assertEqual(r.returncode, 3, r.stdout)
            self.assertIn("key rotation failed", r.stderr)
            self.assertIn("the old key still opens the database", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        finally:
            holder.stdin.close()
            holder.wait(timeout=10)
        self.assertEqual(self.key(), old)
        self.assertFalse(os.path.exists(self.key_file + ".new"))
        self.assertTrue(opens(self.db, old))
        self.send_and_verify("still@example.org")
        self.assertEqual([rec["outcome"] for rec in self.audit("key-rotation")], ["failure"])
        # Once the other process is gone, the rotation goes through.
        r = d.cli("key", "rotate")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(opens(self.db, old))

    def test_a_rotation_cut_short_by_a_crash_is_settled_at_start(self):
        d = self.d
        rid = d.send("crash@example.org")
        d.stop()
        old = self.key()
        new = os.urandom(32).hex()
        pending = self.key_file + ".new"

        # Crash before the rekey: a pending key that opens nothing is removed.
        with open(pending, "w") as f:
            f.write(new + "\n")
        os.chmod(pending, 0o600)
        d.start()
        self.assertFalse(os.path.exists(pending))
        self.assertEqual(self.key(), old)
        self.assertIn("left by an interrupted key rotation", d.read_log())
        d.stop()

        # Crash after the rekey, before the rename: the database opens only with
        # the pending key, and the start completes the rotation.
        rc, out, err = sqlcipher(self.db, old, "PRAGMA journal_mode = DELETE;\nPRAGMA rekey = \"x'%s'\";" % new)
        self.assertEqual((rc, err), (0, ""))
        self.assertFalse(opens(self.db, old))
        with open(pending, "w") as f:
            f.write(new + "\n")
        os.chmod(pending, 0o600)
        d.start()
        self.assertIn("completed an interrupted key rotation", d.read_log())
        self.assertEqual(self.key(), new)
        self.assertFalse(os.path.exists(pending))
        r = d.cli("status", rid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_no_secrets_in_log_or_audit(old, new)

    def test_a_key_from_a_systemd_credential_is_not_rotated(self):
        d = self.d
        d.stop()
        creds = tempfile.mkdtemp()
        try:
            for name, cred in (("store.key", "store-key"), ("pepper.key", "code-pepper")):
                shutil.copy(os.path.join(d.state, "keys", name), os.path.join(creds, cred))
                os.chmod(os.path.join(creds, cred), 0o400)
            key = self.key()
            env = d.env()
            env["CREDENTIALS_DIRECTORY"] = creds
            d.env = lambda: env
            d.start()
            r = d.cli("key", "rotate")
            self.assertEqual(r.returncode, 5, r.stderr)
            self.assertIn("systemd credential 'store-key'", r.stderr)
            self.assertIn("twofactord(8)", r.stderr)
            self.assertTrue(opens(self.db, key))
            self.assertFalse(os.path.exists(self.key_file + ".new"))
        finally:
            shutil.rmtree(creds, ignore_errors=True)


class Backup(Base):
    def backup(self, *args, user=None):
        return self.d.cli("backup", *args, user=user)

    def test_backup_is_encrypted_verified_and_private(self):
        d = self.d
        ids = [d.send("b%d@example.org" % i) for i in range(3)]
        key = self.key()
        path = os.path.join(self.out, "twofactor.backup")
        r = self.backup("-o", path)
        self.assertEqual(r.returncode, 0, r.stderr + d.read_log())
        self.assertEqual(r.stderr, "")  # no progress on a pipe
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        digest = sha256(path)
        self.assertIn(digest, r.stdout)
        self.assertIn("%d bytes" % os.path.getsize(path), r.stdout)
        with open(path, "rb") as f:
            self.assertFalse(f.read(16).startswith(b"SQLite format 3"))

        self.assertEqual(sqlcipher(path, key, "PRAGMA integrity_check;")[1], "ok")
        self.assertEqual(sqlcipher(path, key, "SELECT id FROM requests ORDER BY id;")[1].split(), sorted(ids))
        self.assertEqual(sqlcipher(path, key, "PRAGMA journal_mode;")[1], "delete")
        self.assertFalse(opens(path, os.urandom(32).hex()))
        # Nothing left behind: no temporary copy in the state directory, no partial file.
        self.assertEqual([n for n in os.listdir(d.state) if n.startswith(".backup-")], [])
        self.assertEqual(os.listdir(self.out), ["twofactor.backup"])
        records = self.audit("backup")
        self.assertEqual([rec["outcome"] for rec in records], ["success"])
        self.assertIn(digest, records[0]["detail"])
        self.assert_no_secrets_in_log_or_audit(key, path, self.out)

        # Not overwritten without --force: one line naming the file and the flag.
        mtime = os.stat(path).st_mtime_ns
        r = self.backup("-o", path)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.strip(), "twofactor backup: %s exists; --force replaces it" % path)
        self.assertEqual((sha256(path), os.stat(path).st_mtime_ns), (digest, mtime))
        self.assertEqual(os.listdir(self.out), ["twofactor.backup"])

        d.send("later@example.org")
        r = self.backup("--force", "-o", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotEqual(sha256(path), digest)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(sqlcipher(path, key, "SELECT count(*) FROM requests;")[1], "4")
        self.assertEqual(os.listdir(self.out), ["twofactor.backup"])

    def test_a_large_store_arrives_whole_in_chunks(self):
        d = self.d
        d.stop()
        key = self.key()
        # About 5 MB of rows: many backup steps and many 512 KiB data replies.
        rc, out, err = sqlcipher(self.db, key, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
                                 "WHERE x < 20000) INSERT INTO request_log (at, method, duration_ms, result, uid) "
                                 "SELECT x, hex(randomblob(100)), 1, 'ok', 0 FROM n;")
        self.assertEqual((rc, err), (0, ""))
        d.start()
        path = os.path.join(self.out, "big.backup")
        r = self.backup("--json", "-o", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["size"], os.path.getsize(path))
        self.assertGreater(out["size"], 4 * 1024 * 1024)
        self.assertEqual(out["sha256"], sha256(path))
        self.assertEqual(out["file"], path)
        self.assertEqual(sqlcipher(path, key, "PRAGMA integrity_check;")[1], "ok")
        self.assertGreaterEqual(int(sqlcipher(path, key, "SELECT count(*) FROM request_log;")[1]), 20000)

    def test_progress_only_on_a_terminal(self):
        path = os.path.join(self.out, "tty.backup")
        master, slave = pty.openpty()
        cmd = [harness.TWOFACTOR, "--socket", self.d.socket, "backup", "-o", path]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        stderr = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            stderr += chunk
        os.close(master)
        stdout = p.communicate(timeout=60)[0]
        self.assertEqual(p.returncode, 0, stderr)
        text = stderr.decode()
        self.assertRegex(text, r"twofactor backup: 100% \(\d+/\d+ pages\)")
        self.assertIn("receiving", text)
        self.assertIn(b"sha256", stdout)  # the result stays on stdout

    def test_refusals(self):
        d = self.d
        # Wrong role: refused by the daemon, and nothing is left in the directory.
        shared = os.path.join(self.out, "shared")
        os.mkdir(shared)
        os.chmod(self.out, 0o755)
        os.chmod(shared, 0o777)
        r = self.backup("-o", os.path.join(shared, "x.backup"), user=NOBODY)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("permission denied", r.stderr)
        self.assertEqual(os.listdir(shared), [])

        missing = os.path.join(self.out, "no", "such", "dir", "x.backup")
        r = self.backup("-o", missing)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.strip(), "twofactor backup: cannot write %s: directory %s does not exist"
                         % (missing, os.path.dirname(missing)))

        r = self.backup("-o", self.out)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("is a directory", r.stderr)

        r = self.backup()
        self.assertEqual(r.returncode, 2, r.stderr)

        # Raw Varlink without "more": the data could not be sent, so it is refused.
        reply = d.call("io.twofactor.Maintenance.Backup", {})
        self.assertEqual(reply.get("error"), "org.varlink.service.ExpectedMore")
        self.assertEqual([n for n in os.listdir(d.state) if n.startswith(".backup-")], [])

    def test_raw_varlink_stream(self):
        with self.d.connect() as c:
            c.send_raw(json.dumps({"method": "io.twofactor.Maintenance.Backup", "more": True}).encode() + b"\0")
            replies = []
            while True:
                m = c.recv_message()
                self.assertIsNotNone(m)
                replies.append(m)
                if not m.get("continues"):
                    break
        self.assertNotIn("error", replies[-1])
        phases = [m["parameters"]["phase"] for m in replies]
        self.assertEqual(phases[0], "copy")
        self.assertEqual(phases[-1], "done")
        self.assertIn("data", phases)
        self.assertEqual(phases, sorted(phases, key=["copy", "data", "done"].index))
        import base64
        data = b"".join(base64.b64decode(m["parameters"]["data"]) for m in replies if m["parameters"]["phase"] == "data")
        final = replies[-1]["parameters"]
        self.assertEqual((len(data), hashlib.sha256(data).hexdigest()), (final["size"], final["sha256"]))

    def test_restore_as_twofactord_8_describes_it(self):
        d = self.d
        kept = d.send("kept@example.org")
        path = os.path.join(self.out, "restore.backup")
        self.assertEqual(self.backup("-o", path).returncode, 0)
        lost = d.send("lost@example.org")
        d.stop()
        os.rename(self.db, self.db + ".replaced")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.db + suffix):
                os.unlink(self.db + suffix)
        shutil.copyfile(path, self.db)
        os.chmod(self.db, 0o600)
        d.start()
        r = d.cli("audit", "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(d.cli("status", kept).returncode, 0)
        self.assertEqual(d.cli("status", lost).returncode, 7)
        self.send_and_verify("restored@example.org")

    def test_backup_after_rotation_uses_the_new_key(self):
        old = self.key()
        r = self.d.cli("key", "rotate")
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(self.out, "rotated.backup")
        r = self.backup("-o", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sqlcipher(path, self.key(), "PRAGMA integrity_check;")[1], "ok")
        self.assertFalse(opens(path, old))


class PageSize(Base):
    """Stores are made with 4 KiB cipher pages; a store an older version made
    with SQLCipher 3's 1 KiB pages still opens, serves, rotates and backs up
    as it is, and twofactord(8)'s conversion turns it into a 4 KiB one."""

    def test_a_new_store_has_4_kib_pages(self):
        self.d.send("page@example.org")
        key = bytes.fromhex(self.key())
        self.assertEqual(sqlcipher_scan.page_size_of(self.db, key), 4096)
        self.assertTrue(opens(self.db, self.key()))
        _, _, err = sqlcipher(self.db, self.key(), "SELECT count(*) FROM requests;", page_size=1024)
        self.assertIn("not a database", err)
        self.assertNotIn("1 KiB cipher pages", self.d.read_log())

    def legacy_store(self):
        """Replaces the store with an empty 1 KiB-page one under the same key."""
        self.d.stop()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.db + suffix):
                os.unlink(self.db + suffix)
        rc, _, err = sqlcipher(self.db, self.key(), "CREATE TABLE scratch(x);\nDROP TABLE scratch;", page_size=1024)
        self.assertEqual((rc, err), (0, ""))
        os.chmod(self.db, 0o600)
        self.d.start()

    def test_a_1_kib_store_serves_rotates_and_backs_up_as_it_is(self):
        self.legacy_store()
        self.assertIn("1 KiB cipher pages", self.d.read_log())
        kept = self.send_and_verify("legacy@example.org")
        self.assertEqual(sqlcipher_scan.page_size_of(self.db, bytes.fromhex(self.key())), 1024)
        r = self.d.cli("key", "rotate")
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        self.assertEqual(sqlcipher(self.db, self.key(), "SELECT count(*) FROM requests;", page_size=1024)[1], "1")
        path = os.path.join(self.out, "legacy.backup")
        r = self.d.cli("backup", "-o", path)
        self.assertEqual(r.returncode, 0, r.stderr + self.d.read_log())
        self.assertEqual(sqlcipher(path, self.key(), "PRAGMA integrity_check;", page_size=1024)[1], "ok")
        self.assertEqual(sqlcipher_scan.page_size_of(path, bytes.fromhex(self.key())), 1024)
        self.assertEqual(self.d.cli("status", kept).returncode, 0)

    def test_the_conversion_twofactord_8_describes(self):
        self.legacy_store()
        kept = self.send_and_verify("convert@example.org")
        self.d.stop()
        key = self.key()
        version = sqlcipher(self.db, key, "PRAGMA user_version;", page_size=1024)[1]
        self.assertTrue(version.isdigit() and int(version) > 0, version)
        converted = self.db + ".4k"
        script = ("ATTACH DATABASE '%s' AS new KEY \"x'%s'\";\nPRAGMA new.cipher_page_size = 4096;\n"
                  "SELECT sqlcipher_export('new');\nPRAGMA new.user_version = %s;\nDETACH DATABASE new;"
                  % (converted, key, version))
        rc, _, err = sqlcipher(self.db, key, script, page_size=1024)
        self.assertEqual((rc, err), (0, ""))
        os.chmod(converted, 0o600)
        os.rename(converted, self.db)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.db + suffix):
                os.unlink(self.db + suffix)
        notices = self.d.read_log().count("1 KiB cipher pages")
        self.d.start()
        self.assertEqual(sqlcipher_scan.page_size_of(self.db, bytes.fromhex(key)), 4096)
        self.assertEqual(self.d.cli("status", kept).returncode, 0)
        r = self.d.cli("audit", "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.send_and_verify("after@example.org")
        self.assertEqual(self.d.read_log().count("1 KiB cipher pages"), notices)


if __name__ == "__main__":
    harness.main()

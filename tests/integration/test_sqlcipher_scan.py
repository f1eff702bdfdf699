"""Self test of sqlcipher_scan against databases made by the sqlcipher CLI:
it must find strings in live rows, WAL frames and freed pages, must not find
them after a secure delete, and must refuse a wrong key."""
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

import harness
import sqlcipher_scan

SQLCIPHER = shutil.which("sqlcipher")


@unittest.skipUnless(SQLCIPHER, "sqlcipher CLI not installed")
class SqlcipherScan(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sqlcipher-scan-")
        self.db = os.path.join(self.dir, "db")
        self.key = os.urandom(32)
        self.holder = None

    def tearDown(self):
        if self.holder is not None:
            self.holder.stdin.close()
            self.holder.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, script, key=None):
        key = self.key if key is None else key
        r = subprocess.run([SQLCIPHER, self.db], input="PRAGMA key = \"x'%s'\";\n%s\n" % (key.hex(), script),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        return r.stdout

    def create(self, *values):
        inserts = "".join("INSERT INTO t VALUES('%s');\n" % v for v in values)
        self.assertIn("wal", self.sql("PRAGMA journal_mode=WAL;\nCREATE TABLE t(x);\n" + inserts))

    def hold_open(self):
        """A second connection kept open, so the writer's close neither
        checkpoints nor deletes the WAL."""
        self.holder = subprocess.Popen([SQLCIPHER, self.db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
        self.holder.stdin.write("PRAGMA key = \"x'%s'\";\nSELECT 'ready', count(*) FROM t;\n" % self.key.hex())
        self.holder.stdin.flush()
        self.assertTrue(self.holder.stdout.readline().startswith("ready|"))

    def raw(self, suffix=""):
        path = self.db + suffix
        if not os.path.exists(path):
            return b""
        with open(path, "rb") as f:
            return f.read()

    def test_main_file_layout_and_live_row(self):
        self.create("alice@example.org")
        self.assertEqual(len(self.raw("-wal")), 0)  # the CLI checkpointed on close
        raw = self.raw()
        self.assertNotIn(b"alice@example.org", raw)
        self.assertNotEqual(raw[:16], sqlcipher_scan.SQLITE_MAGIC)
        pages = sqlcipher_scan.decrypt_pages(self.db, self.key, verify_hmac=True)
        self.assertEqual(len(pages), len(raw) // 1024)
        self.assertTrue(all(len(p) == 1024 for p in pages))
        head = pages[0]
        self.assertEqual(head[:16], b"SQLite format 3\0")
        self.assertEqual(struct.unpack(">H", head[16:18])[0], 1024)  # page size
        self.assertEqual(head[18:20], b"\x02\x02")  # WAL mode
        self.assertEqual(head[20], 48)  # reserve: IV 16 + HMAC-SHA1 20, rounded to 16
        self.assertIn(b"CREATE TABLE t(x)", head)
        self.assertTrue(sqlcipher_scan.contains(self.db, self.key, "alice@example.org"))
        self.assertTrue(sqlcipher_scan.contains(self.db, self.key, b"alice@example.org"))
        self.assertFalse(sqlcipher_scan.contains(self.db, self.key, "mallory@example.org"))

    def test_data_only_in_the_wal(self):
        self.create("alice@example.org")
        self.hold_open()
        self.sql("PRAGMA wal_autocheckpoint=0;\nINSERT INTO t VALUES('bob@example.org');")
        wal = self.raw("-wal")
        self.assertGreater(len(wal), 32)
        self.assertNotIn(b"bob@example.org", wal)
        main = sqlcipher_scan.decrypt_pages(self.db, self.key, verify_hmac=True)
        self.assertNotIn(b"bob@example.org", b"".join(main))
        frames = sqlcipher_scan.decrypt_wal(self.db + "-wal", self.key, self.raw()[:16], verify_hmac=True)
        self.assertEqual(len(frames), (len(wal) - 32) // (24 + 1024))
        self.assertIn(b"bob@example.org", b"".join(frames))
        self.assertTrue(sqlcipher_scan.contains(self.db, self.key, "bob@example.org"))
        self.assertTrue(sqlcipher_scan.contains(self.db, self.key, "alice@example.org"))

    def test_freed_pages_are_scanned(self):
        self.create(*["user%03d@example.org%s" % (i, "x" * 200) for i in range(50)])
        # Debian builds SQLCipher with SQLITE_SECURE_DELETE (on by default): turn it off here.
        self.assertEqual(self.sql("PRAGMA secure_delete=OFF;\nDELETE FROM t;\nPRAGMA wal_checkpoint(TRUNCATE);\nSELECT count(*) FROM t;"),
                         "0\n0|0|0\n0\n")
        self.assertEqual(len(self.raw("-wal")), 0)
        # No live row left, but without secure_delete the freed pages still hold them.
        self.assertTrue(sqlcipher_scan.contains(self.db, self.key, "user042@example.org"))

    def test_secure_delete_leaves_nothing(self):
        self.create("alice@example.org", "+491511234567")
        self.assertTrue(sqlcipher_scan.contains(self.db, self.key, "+491511234567"))
        self.sql("PRAGMA secure_delete=ON;\nDELETE FROM t;\nPRAGMA wal_checkpoint(TRUNCATE);")
        self.assertEqual(len(self.raw("-wal")), 0)
        self.assertFalse(sqlcipher_scan.contains(self.db, self.key, "alice@example.org"))
        self.assertFalse(sqlcipher_scan.contains(self.db, self.key, "+491511234567"))

    def test_non_ascii_needle_as_utf8(self):
        self.create("j\u00fcrgen@example.org")
        self.assertTrue(sqlcipher_scan.contains(self.db, self.key, "j\u00fcrgen@example.org"))
        self.assertTrue(sqlcipher_scan.contains(self.db, self.key, "j\u00fcrgen".encode("utf-8")))

    def test_wrong_key_is_refused(self):
        self.create("alice@example.org")
        wrong = bytes(b ^ 1 for b in self.key)
        with self.assertRaisesRegex(ValueError, "wrong key or not a SQLCipher 3 database"):
            sqlcipher_scan.decrypt_pages(self.db, wrong)
        with self.assertRaisesRegex(ValueError, "wrong key or not a SQLCipher 3 database"):
            sqlcipher_scan.contains(self.db, wrong, "alice@example.org")
        self.assertIn("is not a database", subprocess.run(
            [SQLCIPHER, self.db], input="PRAGMA key = \"x'%s'\";\nSELECT count(*) FROM t;\n" % wrong.hex(),
            capture_output=True, text=True, timeout=30).stderr)

    def test_wrong_key_is_refused_on_wal_page_one(self):
        self.create("alice@example.org")
        self.hold_open()
        self.sql("PRAGMA wal_autocheckpoint=0;\nCREATE TABLE u(y);")  # rewrites page 1 into the WAL
        self.assertIn(1, [pgno for pgno, _ in sqlcipher_scan.wal_frames(self.db + "-wal")])
        with self.assertRaisesRegex(ValueError, "wrong key or not a SQLCipher 3 database"):
            sqlcipher_scan.decrypt_wal(self.db + "-wal", bytes(32), self.raw()[:16])


if __name__ == "__main__":
    harness.main()

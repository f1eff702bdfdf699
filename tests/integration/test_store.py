"""The encrypted store: nothing readable without the key, keys handled with care."""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import harness

SQLCIPHER = shutil.which("sqlcipher")


def sqlcipher(db, script):
    return subprocess.run([SQLCIPHER, db], input=script, capture_output=True, text=True, timeout=30)


class Store(unittest.TestCase):
    def test_database_holds_no_plaintext_and_needs_the_key(self):
        d = harness.Daemon()
        try:
            d.start()
            dests = ["plain%d@example.org" % i for i in range(20)] + ["+4915112345%03d" % i for i in range(20)]
            codes = []
            for dest in dests:
                rid = d.send(dest)
                codes.append(d.code_for(rid))
            d.stop()  # checkpoints the WAL
            d.set_clock(time.time() + 60)  # past the resend cooldown of these destinations
            d.start()
            for i, dest in enumerate(dests[:5]):
                d.send(dest)  # leave some content in the WAL too
            db = os.path.join(d.state, "twofactor.db")
            blobs = b""
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db + suffix):
                    with open(db + suffix, "rb") as f:
                        blobs += f.read()
            with open(db, "rb") as f:
                self.assertNotEqual(f.read(16), b"SQLite format 3\0")
            for dest in dests:
                self.assertNotIn(dest.encode(), blobs)
                self.assertNotIn(dest.split("@")[0].encode(), blobs)
            for code in codes:
                self.assertNotIn(code.encode() + b"\0", blobs)
            with open(os.path.join(d.state, "keys", "store.key")) as f:
                key = f.read().strip()
            self.assertNotIn(key.encode(), blobs)
            self.assertNotIn(bytes.fromhex(key), blobs)
            d.stop()
            if SQLCIPHER:
                r = sqlcipher(db, "SELECT count(*) FROM requests;\n")
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("not a database", r.stderr + r.stdout)
                wrong = "0" * 64
                r = sqlcipher(db, "PRAGMA key = \"x'%s'\";\nPRAGMA cipher_page_size = 4096;\nSELECT count(*) FROM requests;\n" % wrong)
                self.assertIn("not a database", r.stderr + r.stdout)
                r = sqlcipher(db, "PRAGMA key = \"x'%s'\";\nPRAGMA cipher_page_size = 4096;\nSELECT count(*) FROM requests;\n" % key)
                self.assertEqual(r.stdout.strip().splitlines()[-1], "45", r.stderr)
                # Codes are stored only as 32-byte HMACs.
                r = sqlcipher(db, "PRAGMA key = \"x'%s'\";\nPRAGMA cipher_page_size = 4096;\nSELECT DISTINCT length(code_hash) FROM requests;\n" % key)
                self.assertEqual(r.stdout.strip().splitlines()[-1], "32")
        finally:
            d.cleanup()

    def test_keys_generated_private(self):
        d = harness.Daemon().start()
        try:
            for name in ("store.key", "pepper.key"):
                st = os.stat(os.path.join(d.state, "keys", name))
                self.assertEqual(st.st_mode & 0o777, 0o600)
                self.assertEqual(st.st_uid, os.getuid())
            with open(os.path.join(d.state, "keys", "store.key")) as f:
                a = f.read()
            with open(os.path.join(d.state, "keys", "pepper.key")) as f:
                b = f.read()
            self.assertRegex(a.strip(), r"^[0-9a-f]{64}$")
            self.assertNotEqual(a, b)
        finally:
            d.cleanup()

    def test_loose_key_file_refused(self):
        d = harness.Daemon().start()
        d.stop()
        key = os.path.join(d.state, "keys", "store.key")
        try:
            os.chmod(key, 0o644)
            with self.assertRaises(RuntimeError) as ctx:
                d.start(timeout=10)
            self.assertIn("chmod 600 " + key, str(ctx.exception))
            os.chmod(key, 0o600)
            os.chown(key, 65534, -1)
            with self.assertRaises(RuntimeError) as ctx:
                d.start(timeout=10)
            self.assertIn("chown", str(ctx.exception))
            os.chown(key, 0, -1)
            d.start()
        finally:
            d.cleanup()

    def test_wrong_key_refused_and_data_kept(self):
        d = harness.Daemon().start()
        try:
            rid = d.send("keep@example.org")
            d.stop()
            key = os.path.join(d.state, "keys", "store.key")
            with open(key) as f:
                good = f.read()
            with open(key, "w") as f:
                f.write("ab" * 32 + "\n")
            with self.assertRaises(RuntimeError) as ctx:
                d.start(timeout=10)
            self.assertIn("store key does not match", str(ctx.exception))
            with open(key, "w") as f:
                f.write(good)
            d.start()
            self.assertEqual(d.cli("status", rid).returncode, 0)
        finally:
            d.cleanup()

    def test_credentials_directory_takes_precedence(self):
        d = harness.Daemon().start()
        d.stop()
        creds = tempfile.mkdtemp()
        try:
            keys = os.path.join(d.state, "keys")
            for name, cred in (("store.key", "store-key"), ("pepper.key", "code-pepper")):
                shutil.copy(os.path.join(keys, name), os.path.join(creds, cred))
                os.chmod(os.path.join(creds, cred), 0o400)
                # The key file now holds garbage: only the credential can open the store.
                with open(os.path.join(keys, name), "w") as f:
                    f.write("00" * 32 + "\n")
            env = d.env()
            env["CREDENTIALS_DIRECTORY"] = creds
            d.env = lambda: env
            d.start()
            d.send("cred@example.org")
        finally:
            d.cleanup()
            shutil.rmtree(creds, ignore_errors=True)


if __name__ == "__main__":
    harness.main()

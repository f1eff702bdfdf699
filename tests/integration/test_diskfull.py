"""A full disk, on small tmpfs mounts (the tests run as root): a send whose
outbox write fails ends as failed with a message that names no path; a verify
refused by a full store says nothing was changed (not "nothing was sent"); a
start on a full disk reports the I/O error, not a wrong key; nothing that was
acknowledged is lost, and everything works again once space returns."""
import errno
import json
import os
import re
import subprocess
import unittest

import harness

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[outbox]
directory = "{root}/OUTBOX"

[apps.shop]
display_name = "Shop"
channels = ["email"]
"""


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path], check=True)


def umount(path):
    subprocess.run(["umount", "-l", path], check=False)


def fill(path):
    """Writes a file in `path` until the file system is full; returns its name."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        try:  # the last partial block too
            while True:
                f.write(b"\0")
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return filler


@unittest.skipUnless(os.geteuid() == 0, "mounting a tmpfs needs root")
class OutboxFull(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon(config=CONFIG.replace("OUTBOX", "outbox-mnt"))
        self.mnt = os.path.join(self.d.root, "outbox-mnt")
        mount_tmpfs(self.mnt, "64k")
        self.d.start()

    def tearDown(self):
        self.d.stop()
        umount(self.mnt)
        self.d.cleanup()

    def test_failed_outbox_write_fails_the_request_without_naming_paths(self):
        ok = self.d.send("before@example.org", "shop")
        filler = fill(self.mnt)
        r = self.d.cli("send", "--app", "shop", "--to", "full@example.org")
        self.assertEqual(r.returncode, 6, r.stdout + r.stderr)  # DeliveryFailed
        self.assertIn("No space left on device", r.stderr)
        self.assertNotIn(self.d.root, r.stderr)
        self.assertNotIn("/", r.stderr.split("delivery failed", 1)[1].split("(request")[0])
        rid = re.search(r"\(request ([a-z0-9]+)\)", r.stderr).group(1)
        status = json.loads(self.d.cli("--json", "status", rid).stdout)
        self.assertEqual(status["status"], "failed")
        self.assertNotIn(self.d.root, status.get("failure", ""))
        # No job is left to retry it after a restart either.
        queued = [json.loads(x) for x in self.d.cli("--json", "deliveries", rid).stdout.splitlines()]
        self.assertEqual([x for x in queued if x["outcome"] == "queued"], [])
        self.assertIn(self.mnt, self.d.read_log())  # the operator's log has the path

        os.unlink(filler)
        again = self.d.send("after@example.org", "shop")
        self.assertEqual(self.d.cli("verify", "--id", again, "--code", self.d_code(again)).returncode, 0)
        self.assertEqual(self.d.cli("verify", "--id", ok, "--code", self.d_code(ok)).returncode, 0)

    def d_code(self, rid):
        for name in os.listdir(os.path.join(self.mnt, "new")):
            if "." + rid + "." in name:
                text = open(os.path.join(self.mnt, "new", name)).read()
                return re.search(r"\b(\d{6})\b", text.split("\n\n", 1)[1]).group(1)
        raise AssertionError("no message for " + rid)


@unittest.skipUnless(os.geteuid() == 0, "mounting a tmpfs needs root")
class StoreFull(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon(config=CONFIG.replace("OUTBOX", "outbox"))
        mount_tmpfs(self.d.state, "16m")
        self.d.start()

    def tearDown(self):
        self.d.stop()
        umount(self.d.state)
        self.d.cleanup()

    def code(self, rid):
        outbox = os.path.join(self.d.root, "outbox", "new")
        for name in os.listdir(outbox):
            if "." + rid + "." in name:
                text = open(os.path.join(outbox, name)).read()
                return re.search(r"\b(\d{6})\b", text.split("\n\n", 1)[1]).group(1)
        raise AssertionError("no message for " + rid)

    def test_full_store_refuses_clearly_loses_nothing_and_recovers(self):
        kept = self.d.send("kept@example.org", "shop")
        spares = [self.d.send("spare%d@example.org" % i, "shop") for i in range(4)]
        filler = fill(self.d.state)

        # Wrong codes for spare requests use up whatever room the WAL's last
        # block had, until the store refuses.
        refusal = None
        for rid in spares:
            for _ in range(4):
                r = self.d.cli("verify", "--id", rid, "--code", "000000" if self.code(rid) != "000000" else "111111")
                if r.returncode == 3:
                    refusal = r
                    break
            if refusal:
                break
        self.assertIsNotNone(refusal, "the store never refused a verify on a full disk")
        self.assertNotIn("nothing was sent", refusal.stderr)
        self.assertIn("nothing was changed", refusal.stderr)
        self.assertIn("disk is full", refusal.stderr)
        self.assertNotIn(self.d.root, refusal.stderr)

        # The right code is refused the same way; the request is still pending.
        r = self.d.cli("verify", "--id", kept, "--code", self.code(kept))
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("nothing was changed", r.stderr)
        r = self.d.cli("send", "--app", "shop", "--to", "refused@example.org")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("nothing was sent", r.stderr)

        os.unlink(filler)
        r = self.d.cli("verify", "--id", kept, "--code", self.code(kept))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("approved", r.stdout)
        for rid in spares:
            self.assertEqual(self.d.cli("--json", "status", rid).returncode, 0)
        self.d.send("after@example.org", "shop")

    def test_start_on_a_full_disk_reports_the_io_error_not_the_key(self):
        kept = self.d.send("kept@example.org", "shop")
        self.d.stop()
        filler = fill(self.d.state)
        with self.assertRaises(RuntimeError) as started:
            self.d.start(timeout=20)
        self.d.log.close()
        self.d.proc = None
        log = str(started.exception)
        self.assertNotIn("key does not match", log)
        self.assertRegex(log, r"disk is full|disk I/O error|No space left on device")
        os.unlink(filler)
        self.d.start()
        self.assertEqual(json.loads(self.d.cli("--json", "status", kept).stdout)["status"], "pending")
        r = self.d.cli("verify", "--id", kept, "--code", StoreFull.code(self, kept))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    harness.main()

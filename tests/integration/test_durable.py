"""Delivery that survives the process: sends queued towards a provider that is
down outlive a kill -9 and a restart, each acknowledged request is delivered
exactly once (counted at the SES mock) with a fresh code that verifies; and
under concurrent sends and verifies a kill -9 loses no acknowledged request and
lets no code be accepted twice."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from test_email import SES_CONFIG, private, start_mock, stop_mock, wait_for

SRC = os.environ["TWOFACTOR_SOURCE_DIR"]

# Retries slow enough that a send is still being retried when the daemon dies.
DURABLE_CONFIG = SES_CONFIG.replace("""[retry]
max_attempts = 3
base_delay_ms = 50
max_delay_ms = 200
send_wait = 20""", """[retry]
max_attempts = 8
base_delay_ms = 1500
max_delay_ms = 3000
send_wait = 20""")
assert DURABLE_CONFIG != SES_CONFIG


def deliveries(d, rid=None):
    r = d.cli("--json", "deliveries", *([rid] if rid else []))
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


class Durable(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="twofactor-durable-")
        creds = os.path.join(self.tmp, "creds.json")
        with open(creds, "w") as f:
            json.dump([{"accessKeyId": "AKIDTWOFACTOR", "secretAccessKey": "s3cr3t/Key+Example"}], f)
        self.log = os.path.join(self.tmp, "requests.jsonl")
        self.down = os.path.join(self.tmp, "down")
        open(self.down, "w").close()  # the provider starts down
        port_file = os.path.join(self.tmp, "port")
        self.mock, port = start_mock([os.path.join(SRC, "tests/mock/ses_server.py"), "--port-file", port_file,
                                      "--log", self.log, "--credentials", creds, "--down-file", self.down],
                                     port_file)
        self.d = harness.Daemon(config=DURABLE_CONFIG.replace("PORT", str(port)))
        private(os.path.join(self.d.root, "aws-id"), "AKIDTWOFACTOR\n")
        private(os.path.join(self.d.root, "aws-secret"), "s3cr3t/Key+Example\n")
        self.d.start()

    def tearDown(self):
        self.d.cleanup()
        stop_mock(self.mock)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def mock_entries(self, address):
        out = []
        if os.path.exists(self.log):
            for line in open(self.log):
                entry = json.loads(line)
                if address in json.dumps((entry.get("json") or {}).get("Destination", {})):
                    out.append(entry)
        return out

    def accepted_codes(self, address):
        return [re.search(r"\b(\d{6})\b", e["json"]["Content"]["Simple"]["Body"]["Text"]["Data"]).group(1)
                for e in self.mock_entries(address) if e["status"] == 200]

    def queue_sends(self, n):
        sent = {}
        for i in range(n):
            address = "user%d@example.org" % i
            r = self.d.cli("--json", "send", "--app", "shop", "--to", address, "--no-wait")
            self.assertEqual(r.returncode, 0, r.stderr)
            sent[json.loads(r.stdout)["request"]["id"]] = address
        # Each has been tried once, refused by the provider that is down, and
        # its job records that try.
        def tried():
            jobs = [x for x in deliveries(self.d) if x["outcome"] == "queued"]
            return len([j for j in jobs if j["requestId"] in sent and j["attempts"] >= 1]) == len(sent)
        self.assertTrue(wait_for(tried, 20))
        return sent

    def kill(self):
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        self.d.log.close()
        self.d.proc = None

    def assert_delivered_once_and_verify(self, sent):
        for rid, address in sent.items():
            self.assertTrue(wait_for(lambda: self.accepted_codes(address), 30), "never delivered: " + rid)
        time.sleep(1)  # a duplicate would come now, from a second sweep or an old retry
        for rid, address in sent.items():
            codes = self.accepted_codes(address)
            self.assertEqual(len(codes), 1, "%s delivered %d times" % (rid, len(codes)))
            r = self.d.cli("verify", "--id", rid, "--code", codes[0])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("approved", r.stdout)

    def test_queued_sends_survive_kill_9_and_are_delivered_once(self):
        sent = self.queue_sends(4)
        # The jobs are in the store, never their codes: deliveries shows them queued.
        rid = next(iter(sent))
        jobs = [x for x in deliveries(self.d, rid) if x["outcome"] == "queued"]
        self.assertEqual(len(jobs), 1)
        self.assertEqual(jobs[0]["send"], 1)
        self.assertGreaterEqual(jobs[0]["attempts"], 1)  # retries go on while it is down
        self.assertIn("ServiceUnavailable", jobs[0]["lastError"])
        human = self.d.cli("deliveries", rid).stdout
        self.assertRegex(human, r"(?m)^queued +%s +1\.[1-9] +next try " % rid)
        self.kill()
        os.unlink(self.down)  # the provider is back
        self.d.start()
        self.assert_delivered_once_and_verify(sent)
        for rid in sent:
            log = deliveries(self.d, rid)
            self.assertEqual([x["outcome"] for x in log if x["outcome"] == "queued"], [])  # the jobs ended
            accepted = [x for x in log if x["outcome"] == "accepted"]
            # Taken over as a new send with a fresh code; the try count went on.
            self.assertEqual(accepted[0]["send"], 2)
            self.assertGreater(accepted[0]["attempt"], 1)
            status = json.loads(self.d.cli("--json", "status", rid).stdout)
            self.assertEqual(status["sends"], 2)
        self.assertIn("delivery taken over", self.d.read_log())
        audit = self.d.cli("--json", "audit", "list").stdout
        self.assertIn("delivery taken over from", audit)

    def test_provider_down_then_up_retries_resume_after_a_restart(self):
        sent = self.queue_sends(2)
        self.d.stop()  # an orderly restart: the retries in memory end with the process
        before = {a: len(self.mock_entries(a)) for a in sent.values()}
        time.sleep(2)
        self.assertEqual({a: len(self.mock_entries(a)) for a in sent.values()}, before)  # nobody retries
        os.unlink(self.down)
        self.d.start()
        self.assert_delivered_once_and_verify(sent)

    def test_an_old_code_from_before_the_crash_does_not_verify(self):
        r = self.d.cli("--json", "send", "--app", "shop", "--to", "first@example.org", "--no-wait")
        rid = json.loads(r.stdout)["request"]["id"]
        self.assertTrue(wait_for(lambda: self.mock_entries("first@example.org"), 20))
        # The provider got the code but answered 503: the user may still have it.
        text = self.mock_entries("first@example.org")[0]["json"]["Content"]["Simple"]["Body"]["Text"]["Data"]
        old = re.search(r"\b(\d{6})\b", text).group(1)
        self.kill()
        os.unlink(self.down)
        self.d.start()
        self.assertTrue(wait_for(lambda: self.accepted_codes("first@example.org"), 30))
        new = self.accepted_codes("first@example.org")[0]
        if new != old:
            r = self.d.cli("verify", "--id", rid, "--code", old)
            self.assertNotEqual(r.returncode, 0)
        r = self.d.cli("verify", "--id", rid, "--code", new)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class KillUnderLoad(unittest.TestCase):
    """The outbox driver, sends and verifies from several threads, kill -9 in the middle."""

    def setUp(self):
        self.d = harness.Daemon()
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def test_kill_9_loses_no_acknowledged_request_and_accepts_no_code_twice(self):
        acknowledged = {}  # id -> address
        approved = {}      # id -> code that was approved
        lock = threading.Lock()
        stop = threading.Event()

        def worker(n):
            i = 0
            while not stop.is_set():
                address = "load%d-%d@example.org" % (n, i)
                i += 1
                r = self.d.cli("--json", "send", "--app", "default", "--to", address)
                if r.returncode != 0:
                    continue  # refused or the daemon is gone: not acknowledged
                rid = json.loads(r.stdout)["request"]["id"]
                with lock:
                    acknowledged[rid] = address
                try:
                    code = self.d.code_for(rid)
                except AssertionError:
                    continue
                v = self.d.cli("verify", "--id", rid, "--code", code)
                if v.returncode == 0 and "approved" in v.stdout:
                    with lock:
                        approved[rid] = code

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        self.assertTrue(wait_for(lambda: len(approved) >= 5, 60))
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        self.d.log.close()
        self.d.proc = None
        self.d.start()

        self.assertGreater(len(acknowledged), 0)
        for rid in acknowledged:
            r = self.d.cli("--json", "status", rid)
            self.assertEqual(r.returncode, 0, "acknowledged request %s lost: %s" % (rid, r.stderr))
            self.assertIn(json.loads(r.stdout)["status"], ("pending", "approved"))
        for rid, code in approved.items():
            self.assertEqual(json.loads(self.d.cli("--json", "status", rid).stdout)["status"], "approved")
            r = self.d.cli("verify", "--id", rid, "--code", code)
            self.assertNotEqual(r.returncode, 0, "code of %s accepted twice" % rid)
        # Whatever was acknowledged and still pending gets a message: every job ends.
        self.assertTrue(wait_for(lambda: not [x for x in deliveries(self.d) if x["outcome"] == "queued"], 20))
        for rid in acknowledged:
            status = json.loads(self.d.cli("--json", "status", rid).stdout)["status"]
            if status == "pending":
                code = self.d.code_for(rid)
                r = self.d.cli("verify", "--id", rid, "--code", code)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


KEEP_CONFIG = """
[daemon]
state_dir = "{{root}}/state"
generate_keys = true

[access.admin]
users = ["{{uid}}"]

[outbox]
keep = "{keep}"

[retention]
schedule = "0 0 1 6 *"

[apps.default]
display_name = "Shop"
channels = ["email"]
"""


class OutboxRemoval(unittest.TestCase):
    """A message holds a code and an address: it leaves the outbox when its request ends."""

    def start(self, keep):
        self.d = harness.Daemon(config=KEEP_CONFIG.format(keep=keep), clock=1_800_000_000)
        self.d.start()
        self.addCleanup(self.d.cleanup)

    def files_of(self, rid, sub):
        d = os.path.join(self.d.state, "outbox", sub)
        return [n for n in os.listdir(d) if "." + rid + "." in n] if os.path.isdir(d) else []

    def test_until_end_removes_messages_of_ended_requests_from_new_and_cur(self):
        self.start("until-end")
        approved = self.d.send("a@example.org")
        read = self.d.send("b@example.org")
        expired = self.d.send("c@example.org")
        # A reader marks one as seen, maildir style.
        os.makedirs(os.path.join(self.d.state, "outbox", "cur"), exist_ok=True)
        name = self.files_of(read, "new")[0]
        os.rename(os.path.join(self.d.state, "outbox", "new", name),
                  os.path.join(self.d.state, "outbox", "cur", name + ":2,S"))
        code = self.d.code_for(approved)
        self.assertEqual(self.d.cli("verify", "--id", approved, "--code", code).returncode, 0)
        self.assertEqual(self.d.cli("cancel", read).returncode, 0)
        self.assertTrue(wait_for(lambda: not self.files_of(approved, "new") and not self.files_of(read, "cur"), 10))
        # Expiry writes nothing: the retention run after it removes the message at the latest.
        self.assertTrue(self.files_of(expired, "new"))
        self.d.set_clock(1_800_000_000 + 3600)
        r = self.d.cli("--json", "retention", "run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(wait_for(lambda: not self.files_of(expired, "new"), 10))

    def test_until_pickup_leaves_what_the_consumer_took(self):
        self.start("until-pickup")
        taken = self.d.send("a@example.org")
        waiting = self.d.send("b@example.org")
        os.makedirs(os.path.join(self.d.state, "outbox", "cur"), exist_ok=True)
        name = self.files_of(taken, "new")[0]
        os.rename(os.path.join(self.d.state, "outbox", "new", name),
                  os.path.join(self.d.state, "outbox", "cur", name))
        for rid in (taken, waiting):
            self.assertEqual(self.d.cli("cancel", rid).returncode, 0)
        self.assertTrue(wait_for(lambda: not self.files_of(waiting, "new"), 10))
        time.sleep(0.5)
        self.assertEqual(self.files_of(taken, "cur"), [name])

    def test_keep_is_validated(self):
        d = harness.Daemon(config=KEEP_CONFIG.format(keep="forever"))
        self.addCleanup(d.cleanup)
        r = subprocess.run([harness.TWOFACTORD, "--config", d.config_path, "--check-config"], capture_output=True,
                           text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("outbox.keep", r.stderr)
        self.assertIn("until-end", r.stderr)


if __name__ == "__main__":
    harness.main()

"""GDPR data-subject requests through the real twofactord and twofactor (issue 5):
export (Art. 15/20) written by the CLI, erasure with the Art. 19 recipients and
nothing left in the decrypted database, its WAL or the log, rectification,
restriction (sends and verifies refused with exit 5), objection, the register
of requests with its deadlines, and the retention policies for authentication
metadata and removed apps."""
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

import harness
import sqlcipher_scan
from test_email import private, start_mock, stop_mock, wait_for

SRC = os.environ["TWOFACTOR_SOURCE_DIR"]
T0 = 1_800_000_000  # 2027-01-15 08:00:00 UTC
DAY = 86400
OPERATOR, DPO = 2001, 2002

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]
[access.operator]
users = ["2001"]
[access.dpo]
users = ["2002"]

[delivery]
email = "outbox"
whatsapp = "whatsapp"

[whatsapp]
graph_url = "http://127.0.0.1:PORT"
api_version = "v21.0"
phone_number_id = "106540352242922"
token_file = "{root}/wa-token"
timeout = 3

[privacy]
controller = "Example Shop GmbH, Hauptstr. 1, 10115 Berlin"
contact = "privacy@example.org"
dpo = "dpo@example.org"

[apps.shop]
channels = ["email", "whatsapp"]
fallback_to_email = true
[apps.shop.rate_limits]
resend_cooldown = 0
[apps.shop.whatsapp_templates]
en = {{ name = "otp_login", language = "en_US" }}
"""


def store_key(d):
    with open(os.path.join(d.state, "keys", "store.key")) as f:
        return bytes.fromhex(f.read().strip())


class Gdpr(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="twofactor-gdpr-")
        cls.glog = os.path.join(cls.tmp, "graph.jsonl")
        control = cls.control = os.path.join(cls.tmp, "control.json")
        with open(control, "w") as f:
            json.dump({}, f)
        port_file = os.path.join(cls.tmp, "port")
        cls.mock, port = start_mock([os.path.join(SRC, "tests/mock/graph_server.py"), "--port-file", port_file,
                                     "--log", cls.glog, "--token", "EAAG-test-token", "--control", control],
                                    port_file)
        cls.d = harness.Daemon(config=CONFIG.replace("PORT", str(port)), clock=T0)
        private(os.path.join(cls.d.root, "wa-token"), "EAAG-test-token\n")
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        stop_mock(cls.mock)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def gdpr(self, *args, user=None):
        return self.d.cli("gdpr", *args, user=user)

    def export(self, subject):
        r = self.d.cli("gdpr", "export", "--subject", subject)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_export_holds_everything_with_the_article_15_context(self):
        d = self.d
        rid = d.send("export.me@example.org", "shop", "--ip", "192.0.2.10", "--device", "Firefox 130")
        code = d.code_for(rid)
        self.assertEqual(d.cli("verify", "--id", rid, "--code", code).returncode, 0)
        doc = self.export("Export.Me@EXAMPLE.org".replace("Export.Me", "export.me"))
        self.assertEqual(doc["subject"], {"kind": "email", "address": "export.me@example.org"})
        [req] = doc["data"]["requests"]
        self.assertEqual((req["id"], req["destination"], req["status"]), (rid, "export.me@example.org", "approved"))
        self.assertEqual((req["clientIp"], req["device"]), ("192.0.2.10", "Firefox 130"))
        self.assertEqual(doc["data"]["deliveries"][0]["requestId"], rid)
        events = [(e["event"], e["outcome"]) for e in doc["data"]["authenticationEvents"]]
        self.assertIn(("send", "success"), events)
        self.assertIn(("verify", "approved"), events)
        self.assertFalse(doc["restricted"])
        ctx = doc["context"]
        for key in ("purposes", "categories", "retention", "rights", "complaint", "source", "automatedDecisions"):
            self.assertTrue(ctx[key], key)
        # Recipients are those that received this subject's data: the outbox
        # stays on this host, and nothing went to WhatsApp.
        self.assertEqual(ctx["recipients"], [])
        self.assertEqual(ctx["controller"], {"name": "Example Shop GmbH, Hauptstr. 1, 10115 Berlin",
                                             "contact": "privacy@example.org", "dpo": "dpo@example.org"})
        self.assertIn("365 days", ctx["retention"]["authenticationMetadata"])
        self.assertNotIn(code, json.dumps(doc))

    def test_recipients_of_a_phone_subject_and_of_an_email_fallback(self):
        d = self.d
        number = "+4915112355501"
        with open(self.control + ".tmp", "w") as f:
            json.dump({number: [131026]}, f)  # undeliverable on WhatsApp: falls back to email
        os.replace(self.control + ".tmp", self.control)
        try:
            r = d.cli("--json", "send", "--app", "shop", "--to", number, "--fallback-email",
                      "only.fallback@example.org")
            self.assertEqual(r.returncode, 0, r.stderr)
            rid = json.loads(r.stdout)["request"]["id"]
        finally:
            with open(self.control, "w") as f:
                json.dump({}, f)
        phone = self.export(number)
        self.assertIn("Meta", json.dumps(phone["context"]["recipients"]))
        # The fallback address only ever got an email: Meta got the number, not
        # it. Asked for in another case, the address is still the same subject's.
        fallback = self.export("Only.Fallback@example.org")
        [req] = fallback["data"]["requestsWithYourFallbackEmail"]
        self.assertEqual(req["id"], rid)
        self.assertEqual([a["channel"] for a in fallback["data"]["deliveries"]], ["email"])
        self.assertNotIn("Meta", json.dumps(fallback["context"]["recipients"]))
        self.assertNotIn("whatsapp", json.dumps(fallback["data"]))
        r = d.cli("--json", "gdpr", "delete", "--subject", "ONLY.FALLBACK@example.org", user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["recipients"], [])

    def test_export_holds_the_register_entries_of_the_subject(self):
        d = self.d
        d.send("registered@example.org", "shop")
        r = self.gdpr("register", "--kind", "rectify", "--subject", "registered@example.org",
                      "--note", "phone call", user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = self.export("registered@example.org")
        kinds = [(e["kind"], e.get("note"), e["completed"] is None) for e in doc["data"]["privacyRequests"]]
        self.assertEqual(kinds, [("rectify", "phone call", True), ("export", None, False)])

    def test_verify_by_address_says_why_nothing_matched(self):
        r = self.d.cli("verify", "--app", "shop", "--to", "nobody.here@example.org", "--code", "123456")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn("no pending request for that app and destination", r.stderr)

    def test_export_file_is_private_and_never_overwritten_without_force(self):
        d = self.d
        d.send("file@example.org", "shop")
        path = os.path.join(self.tmp, "export.json")
        r = self.gdpr("export", "--subject", "file@example.org", "-o", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            self.assertEqual(json.load(f)["subject"]["address"], "file@example.org")
        with open(path, "w") as f:
            f.write("keep me")
        r = self.gdpr("export", "--subject", "file@example.org", "-o", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("already exists", r.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), "keep me")
        r = self.gdpr("export", "--subject", "file@example.org", "-o", path, "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            self.assertEqual(json.load(f)["subject"]["address"], "file@example.org")
        r = self.gdpr("export", "--subject", "file@example.org", "-o", os.path.join(self.tmp, "no", "such", "x"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("does not exist", r.stderr)

    def test_unknown_and_invalid_subjects(self):
        doc = self.export("never.seen@example.org")
        self.assertEqual(doc["data"]["requests"], [])
        r = self.gdpr("export", "--subject", "never.seen@example.org")
        self.assertIn("nothing is held", r.stderr)
        r = self.gdpr("delete", "--subject", "never.seen@example.org")
        self.assertEqual(r.returncode, 7, r.stderr)
        r = self.gdpr("export", "--subject", "not an address")
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid --subject", r.stderr)
        r = self.gdpr("rectify", "--subject", "+4915112340000", "--to", "x@example.org")
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid --to", r.stderr)

    def test_roles(self):
        self.d.send("roles@example.org", "shop")
        r = self.gdpr("export", "--subject", "roles@example.org", user=OPERATOR)
        self.assertEqual(r.returncode, 4, r.stderr)
        r = self.gdpr("delete", "--subject", "roles@example.org", user=OPERATOR)
        self.assertEqual(r.returncode, 4, r.stderr)
        r = self.gdpr("export", "--subject", "roles@example.org", user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.d.cli("send", "--app", "shop", "--to", "roles@example.org", user=DPO)
        self.assertEqual(r.returncode, 4, r.stderr)

    def test_restricted_subject_is_refused_and_kept(self):
        d = self.d
        rid = d.send("restrict.me@example.org", "shop")
        code = d.code_for(rid)
        before = self.export("restrict.me@example.org")["data"]["requests"]
        self.assertEqual(self.gdpr("restrict", "--subject", "restrict.me@example.org", user=DPO).returncode, 0)
        r = d.cli("send", "--app", "shop", "--to", "restrict.me@example.org")
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("restricted", r.stderr)
        r = d.cli("verify", "--id", rid, "--code", code)
        self.assertEqual(r.returncode, 5, r.stderr)
        r = d.cli("resend", rid)
        self.assertEqual(r.returncode, 5, r.stderr)
        r = self.gdpr("rectify", "--subject", "restrict.me@example.org", "--to", "other@example.org")
        self.assertEqual(r.returncode, 5, r.stderr)
        doc = self.export("restrict.me@example.org")
        self.assertTrue(doc["restricted"])
        self.assertEqual(doc["data"]["requests"], before)  # kept unchanged: still pending, no attempt counted
        self.assertEqual(self.gdpr("unrestrict", "--subject", "restrict.me@example.org").returncode, 0)
        self.assertEqual(d.cli("verify", "--id", rid, "--code", code).returncode, 0)

    def test_delete_erases_everything_and_names_the_recipients(self):
        d = self.d
        number = "+4915112398765"
        rid = d.send(number, "shop")
        wait_for(lambda: os.path.exists(self.glog) and number.lstrip("+") in open(self.glog).read())
        self.assertEqual(d.cli("optout", "add", number).returncode, 0)
        email_rid = d.send("erase.me@example.org", "shop")
        deliveries = json.loads(d.cli("--json", "deliveries", rid).stdout.splitlines()[0])
        wamid = deliveries["providerMessageId"]

        r = d.cli("--json", "gdpr", "delete", "--subject", number, user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["erased"]["requests"], 1)
        self.assertEqual(out["erased"]["optOuts"], 1)
        [meta] = out["recipients"]
        self.assertEqual(meta["provider"], "whatsapp")
        self.assertIn("Meta", meta["name"])
        self.assertEqual(meta["messageIds"], [wamid])

        doc = self.export(number)
        # The register keeps the requests themselves (accountability), and they are the subject's data.
        self.assertEqual([e["kind"] for e in doc["data"].pop("privacyRequests")], ["delete", "export"])
        self.assertEqual(doc["data"], {"requests": [], "requestsWithYourFallbackEmail": [], "deliveries": [],
                                       "authenticationEvents": [], "optOut": None, "verificationFailures": []})
        self.assertEqual(d.cli("status", rid).returncode, 7)
        self.assertEqual(d.cli("status", email_rid).returncode, 0)  # another subject: untouched
        self.assertEqual(d.cli("audit", "verify").returncode, 0, "the chain survives the erasure")
        digits = number.lstrip("+")
        if harness.BACKEND == "sqlcipher":
            # PostgreSQL seals the columns and keeps dead row versions until
            # VACUUM (twofactord(8)); test_cluster scans its data directory.
            db = os.path.join(d.state, "twofactor.db")
            key = store_key(d)
            self.assertFalse(sqlcipher_scan.contains(db, key, digits), "the number is still in the database or WAL")
            self.assertTrue(sqlcipher_scan.contains(db, key, "erase.me@example.org"), "the scan must see live data")
        self.assertNotIn(digits, d.read_log())
        r = d.cli("gdpr", "delete", "--subject", number)
        self.assertEqual(r.returncode, 7)

    def test_delete_removes_waiting_outbox_messages(self):
        d = self.d
        rid = d.send("outboxed@example.org", "shop")
        other = d.send("neighbour@example.org", "shop")
        self.assertIn("outboxed@example.org", d.message_for(rid))
        # A mail reader already saw one copy: maildir moved it to cur/ with flags.
        [path] = [p for p in d.outbox_files() if "." + rid + "." in os.path.basename(p)]
        cur = os.path.join(d.state, "outbox", "cur")
        os.makedirs(cur, exist_ok=True)
        os.rename(path, os.path.join(cur, os.path.basename(path) + ":2,S"))
        rid2 = d.send("outboxed@example.org", "shop")
        r = d.cli("--json", "gdpr", "delete", "--subject", "outboxed@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["outboxMessages"], 2)
        leftovers = d.outbox_files() + [os.path.join(cur, n) for n in os.listdir(cur)]
        for p in leftovers:
            with open(p) as f:
                self.assertNotIn("outboxed@example.org", f.read(), p)
        self.assertFalse([p for p in leftovers if rid2 in p or rid in p])
        self.assertIn("neighbour@example.org", d.message_for(other))  # another subject's mail stays

    def test_rectify_moves_everything_to_the_new_address(self):
        d = self.d
        rid = d.send("old.name@example.org", "shop")
        r = self.gdpr("rectify", "--subject", "old.name@example.org", "--to", "New.Name@example.org", user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.export("old.name@example.org")["data"]["requests"], [])
        [req] = self.export("New.Name@example.org")["data"]["requests"]
        self.assertEqual((req["id"], req["destination"]), (rid, "New.Name@example.org"))
        code = d.code_for(rid)
        r = d.cli("verify", "--app", "shop", "--to", "New.Name@example.org", "--code", code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.gdpr("rectify", "--subject", "old.name@example.org", "--to", "x@example.org").returncode, 7)

    def test_objection_stops_profiling_not_delivery(self):
        d = self.d
        self.assertEqual(self.gdpr("object", "--subject", "objector@example.org").returncode, 0)
        r = self.gdpr("object", "--subject", "objector@example.org")
        self.assertIn("already objected", r.stdout)
        rid = d.send("objector@example.org", "shop", "--ip", "192.0.2.99", "--device", "Phone")
        self.assertTrue(d.code_for(rid))
        doc = self.export("objector@example.org")
        self.assertTrue(doc["objected"])
        [req] = doc["data"]["requests"]
        self.assertNotIn("clientIp", req)
        self.assertNotIn("device", req)

    def test_register_tracks_deadlines(self):
        d = self.d
        r = d.cli("--json", "gdpr", "register", "--kind", "export", "--subject", "late@example.org",
                  "--received", "2027-01-01", user=DPO)
        self.assertEqual(r.returncode, 0, r.stderr)
        entry = json.loads(r.stdout)
        self.assertEqual(entry["due"] - entry["received"], 30 * DAY)
        self.assertNotIn("late@example.org", r.stdout)  # only the keyed hash
        ids = lambda *flags: [json.loads(l)["id"] for l in d.cli("--json", "gdpr", "requests", *flags).stdout.splitlines()]
        self.assertIn(entry["id"], ids("--open"))
        d.set_clock(T0 + 20 * DAY)  # 2027-02-04: past the due date (2027-01-31)
        try:
            self.assertIn(entry["id"], ids("--overdue"))
            self.assertEqual(self.gdpr("export", "--subject", "late@example.org").returncode, 0)
            self.assertNotIn(entry["id"], ids("--open"))
            self.assertNotIn(entry["id"], ids("--overdue"))
            [done] = [json.loads(l) for l in d.cli("--json", "gdpr", "requests").stdout.splitlines()
                      if json.loads(l)["id"] == entry["id"]]
            self.assertEqual(done["completed"], T0 + 20 * DAY)
        finally:
            d.set_clock(T0)
        r = self.gdpr("register", "--kind", "sell", "--subject", "late@example.org")
        self.assertEqual(r.returncode, 2)
        r = self.gdpr("requests", "--open", "--overdue")
        self.assertEqual(r.returncode, 2)


RETENTION = """
[daemon]
state_dir = "{{root}}/state"
generate_keys = true

[access.admin]
users = ["{{uid}}"]

[retention]
schedule = "0 0 1 6 *"
batch_size = 3

[apps.keep]
{extra}
"""


class RetentionPolicies(unittest.TestCase):
    def test_identifiers_go_after_90_days_outcomes_after_a_year(self):
        d = harness.Daemon(config=RETENTION.format(extra=""), clock=T0).start()
        try:
            rid = d.send("aging@example.org", "keep", "--reference", "order-17")
            self.assertEqual(d.cli("verify", "--id", rid, "--code", d.code_for(rid)).returncode, 0)
            for i in range(4):
                d.send("other%d@example.org" % i, "keep")
            d.set_clock(T0 + 91 * DAY)
            self.assertEqual(d.cli("retention", "run").returncode, 0)
            r = d.cli("gdpr", "export", "--subject", "aging@example.org")
            # No [privacy] in this configuration: the export says who is missing, not a placeholder.
            self.assertIn("warning: the export does not name the controller", r.stderr)
            self.assertIsNone(json.loads(r.stdout)["context"]["controller"]["name"])
            [req] = json.loads(r.stdout)["data"]["requests"]
            self.assertIsNone(req["destination"])  # found by the keyed hash only
            self.assertNotIn("reference", req)
            self.assertEqual(req["status"], "approved")
            if harness.BACKEND == "sqlcipher":
                key = store_key(d)
                self.assertFalse(sqlcipher_scan.contains(os.path.join(d.state, "twofactor.db"), key, "aging@example.org"))

            d.set_clock(T0 + 366 * DAY)
            r = d.cli("--json", "retention", "run")
            counts = json.loads(r.stdout)["counts"]
            self.assertEqual(counts["authMetadata"], 5)
            self.assertGreater(counts["auditRecords"], 0)
            doc = json.loads(d.cli("gdpr", "export", "--subject", "aging@example.org").stdout)
            self.assertEqual(doc["data"]["requests"], [])
            self.assertEqual(doc["data"]["authenticationEvents"], [])
            r = d.cli("audit", "verify")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            d.send("new@example.org", "keep")  # the chain goes on from its anchor
            r = d.cli("audit", "verify")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            d.cleanup()

    def test_data_of_a_removed_app_goes_30_days_later(self):
        root = tempfile.mkdtemp(prefix="twofactor-apps-")
        if harness.BACKEND == "postgresql":
            harness.pg_empty()  # a root of its own keeps the database: start from an empty one
        d = harness.Daemon(config=RETENTION.format(extra="[apps.gone]\n"), clock=T0, root=root).start()
        try:
            gone = d.send("leaver@example.org", "gone")
            kept = d.send("stayer@example.org", "keep")
            d.stop()
            with open(d.config_path, "w") as f:
                f.write(RETENTION.format(extra="").format(root=root, uid=os.getuid()) + harness.store_section())
            d.start()
            self.assertIn("app 'gone' is no longer configured", d.read_log())
            d.set_clock(T0 + 29 * DAY)
            self.assertEqual(json.loads(d.cli("--json", "retention", "run").stdout)["counts"]["removedApps"], 0)
            d.set_clock(T0 + 31 * DAY)
            counts = json.loads(d.cli("--json", "retention", "run").stdout)["counts"]
            self.assertGreaterEqual(counts["removedApps"], 2)  # the request, its delivery, its audit subjects
            self.assertEqual(d.cli("status", gone).returncode, 7)
            self.assertEqual(d.cli("status", kept).returncode, 0)
            doc = json.loads(d.cli("gdpr", "export", "--subject", "leaver@example.org").stdout)
            self.assertEqual(doc["data"]["authenticationEvents"], [])
            self.assertEqual(d.cli("audit", "verify").returncode, 0)
        finally:
            d.cleanup()

    def test_config_rejects_metadata_shorter_than_delivery_logs(self):
        text = ('[daemon]\nstate_dir = "/tmp/x"\n[retention]\ndelivery_logs = 7776000\n'
                'authentication_metadata = 86400\n[apps.shop]\n')
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        try:
            r = subprocess.run([harness.TWOFACTORD, "--check-config", "--config", f.name], capture_output=True, text=True)
        finally:
            os.unlink(f.name)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("retention.authentication_metadata", r.stderr)


if __name__ == "__main__":
    harness.main()

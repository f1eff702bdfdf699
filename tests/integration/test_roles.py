"""Access control: every method of every interface the daemon serves, called
by every role and by an unmapped peer. The methods come from the daemon's own
introspection, so a method added without an entry here fails the test."""
import json
import os
import subprocess
import unittest

import harness

OPERATOR, DPO, ADMIN, NOBODY = 2001, 2002, 2003, 65534

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.operator]
users = ["2001"]
[access.dpo]
users = ["2002"]
[access.admin]
users = ["2003", "{uid}"]

[apps.shop]
"""

# Who may call what: the access levels of the daemon's method table.
ANYONE = {"operator", "dpo", "admin", "none"}
EXPECTED = {
    "org.varlink.service.GetInfo": ANYONE,
    "org.varlink.service.GetInterfaceDescription": ANYONE,
    "io.twofactor.Daemon.WhoAmI": ANYONE,
    "io.twofactor.Daemon.GetStatus": {"admin"},
    "io.twofactor.Daemon.RequestLog": {"admin"},
    "io.twofactor.Daemon.Apps": {"operator", "admin"},
    "io.twofactor.Daemon.Stats": {"operator", "admin"},
    "io.twofactor.Daemon.ClusterStatus": {"operator", "admin"},
    "io.twofactor.Otp.Send": {"operator", "admin"},
    "io.twofactor.Otp.Verify": {"operator", "admin"},
    "io.twofactor.Otp.Status": {"operator", "admin"},
    "io.twofactor.Otp.Cancel": {"operator", "admin"},
    "io.twofactor.Otp.Resend": {"operator", "admin"},
    "io.twofactor.Otp.Deliveries": {"operator", "admin"},
    "io.twofactor.OptOut.Add": {"admin"},
    "io.twofactor.OptOut.Remove": {"admin"},
    "io.twofactor.OptOut.List": {"admin"},
    "io.twofactor.Suppression.Add": {"operator", "admin"},
    "io.twofactor.Suppression.Remove": {"admin"},
    "io.twofactor.Suppression.List": {"operator", "admin"},
    "io.twofactor.Audit.List": {"dpo", "admin"},
    "io.twofactor.Audit.Export": {"dpo", "admin"},
    "io.twofactor.Audit.Verify": {"admin"},
    "io.twofactor.Audit.Checkpoint": {"dpo", "admin"},
    "io.twofactor.Privacy.RetentionRun": {"dpo", "admin"},
    "io.twofactor.Privacy.RetentionStatus": {"dpo", "admin"},
    "io.twofactor.Privacy.SubjectExport": {"dpo", "admin"},
    "io.twofactor.Privacy.SubjectErase": {"dpo", "admin"},
    "io.twofactor.Privacy.SubjectRectify": {"dpo", "admin"},
    "io.twofactor.Privacy.SubjectRestrict": {"dpo", "admin"},
    "io.twofactor.Privacy.SubjectUnrestrict": {"dpo", "admin"},
    "io.twofactor.Privacy.SubjectObject": {"dpo", "admin"},
    "io.twofactor.Privacy.RegisterRequest": {"dpo", "admin"},
    "io.twofactor.Privacy.Requests": {"dpo", "admin"},
    "io.twofactor.Privacy.BreachReport": {"dpo", "admin"},  # without "more": ExpectedMore
    "io.twofactor.Maintenance.RotateKey": {"admin"},
    "io.twofactor.Maintenance.Backup": {"admin"},  # an admin without "more" gets ExpectedMore
    "io.twofactor.ApiKey.Create": {"admin"},
    "io.twofactor.ApiKey.List": {"admin"},
    "io.twofactor.ApiKey.Revoke": {"admin"},
    "io.twofactor.Events.Deliveries": {"operator", "admin"},
    "io.twofactor.Events.Enable": {"operator", "admin"},
}

# Parameters that pass validation, so that only access decides.
PARAMS = {
    "org.varlink.service.GetInterfaceDescription": {"interface": "io.twofactor.Otp"},
    "io.twofactor.Otp.Send": {"app": "shop", "destination": "roles@example.org"},
    "io.twofactor.Otp.Verify": {"id": "nosuchrequest", "code": "123456"},
    "io.twofactor.Otp.Status": {"id": "nosuchrequest"},
    "io.twofactor.Otp.Cancel": {"id": "nosuchrequest"},
    "io.twofactor.Otp.Resend": {"id": "nosuchrequest"},
    "io.twofactor.OptOut.Add": {"destination": "+4915112349999"},
    "io.twofactor.OptOut.Remove": {"destination": "+4915112349999"},
    "io.twofactor.Suppression.Add": {"address": "roles-suppressed@example.org"},
    "io.twofactor.Suppression.Remove": {"address": "roles-suppressed@example.org"},
    "io.twofactor.Privacy.RetentionRun": {"dryRun": True},
    "io.twofactor.Privacy.SubjectExport": {"subject": "roles-gdpr@example.org"},
    "io.twofactor.Privacy.SubjectErase": {"subject": "roles-gdpr@example.org"},
    "io.twofactor.Privacy.SubjectRectify": {"subject": "roles-gdpr@example.org", "to": "roles-new@example.org"},
    "io.twofactor.Privacy.SubjectRestrict": {"subject": "roles-gdpr@example.org"},
    "io.twofactor.Privacy.SubjectUnrestrict": {"subject": "roles-gdpr@example.org"},
    "io.twofactor.Privacy.SubjectObject": {"subject": "roles-gdpr@example.org"},
    "io.twofactor.Privacy.RegisterRequest": {"kind": "export", "subject": "roles-gdpr@example.org"},
    "io.twofactor.Privacy.BreachReport": {"from": 0, "to": 1},
    "io.twofactor.ApiKey.Create": {"app": "shop", "scopes": ["status"]},
    "io.twofactor.ApiKey.Revoke": {"id": "nosuchkey"},
    "io.twofactor.Events.Enable": {"app": "shop"},
}

CALLER = r"""
import json, socket, sys
sock_path, calls = sys.argv[1], json.loads(sys.argv[2])
out = {}
for method, params in calls:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(json.dumps({"method": method, "parameters": params}).encode() + b"\0")
    buf = b""
    while not buf.endswith(b"\0"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    reply = json.loads(buf.rstrip(b"\0"))
    out[method] = reply.get("error")
print(json.dumps(out))
"""


class Roles(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG).start()
        info = cls.d.call("org.varlink.service.GetInfo")["parameters"]
        cls.methods = []
        for iface in info["interfaces"]:
            desc = cls.d.call("org.varlink.service.GetInterfaceDescription", {"interface": iface})
            for line in desc["parameters"]["description"].splitlines():
                line = line.strip()
                if line.startswith("method "):
                    cls.methods.append(iface + "." + line.split()[1].split("(")[0])

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def call_as(self, uid):
        calls = [(m, PARAMS.get(m, {})) for m in self.methods]

        def drop():
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

        r = subprocess.run(["/usr/bin/python3", "-c", CALLER, self.d.socket, json.dumps(calls)],
                           capture_output=True, text=True, preexec_fn=drop, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_every_method_has_an_expected_access_level(self):
        self.assertEqual(sorted(set(self.methods) - set(EXPECTED)), [])

    def check_role(self, role, uid):
        results = self.call_as(uid)
        for method in self.methods:
            denied = results[method] == "org.varlink.service.PermissionDenied"
            allowed = role in EXPECTED.get(method, set())
            self.assertEqual(not denied, allowed, "%s as %s: %s" % (method, role, results[method]))
            # An allowed call was judged on its merits: never an invalid parameter.
            if allowed:
                self.assertNotEqual(results[method], "org.varlink.service.InvalidParameter", method)

    def test_operator(self):
        self.check_role("operator", OPERATOR)

    def test_dpo(self):
        self.check_role("dpo", DPO)

    def test_admin(self):
        self.check_role("admin", ADMIN)

    def test_unmapped_peer(self):
        self.check_role("none", NOBODY)
        self.assertIn("permission denied: uid 65534", self.d.read_log())

    def test_whoami_reports_roles(self):
        for uid, roles in ((OPERATOR, ["operator"]), (DPO, ["dpo"]), (ADMIN, ["admin"]), (NOBODY, [])):
            r = self.d.cli("--json", "whoami", user=uid)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = json.loads(r.stdout)
            self.assertEqual((out["uid"], out["roles"]), (uid, roles))


if __name__ == "__main__":
    harness.main()

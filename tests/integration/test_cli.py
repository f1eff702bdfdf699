"""The CLI as a user meets it: usage errors that say what was meant, one
meaning of --limit and one set of time forms everywhere, and messages that
name the option at fault."""
import json
import os
import re
import subprocess
import tempfile
import unittest

import harness

NO_PASSWD_UID = 4242  # no entry in /etc/passwd
T0 = 1_800_000_000  # 2027-01-15 08:00:00 UTC

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[apps.shop]

[apps.an-application-with-a-long-name]
"""


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("TWOFACTOR_SOCKET", None)
    if env is not None:
        e = env
    return subprocess.run([harness.TWOFACTOR] + list(args), capture_output=True, text=True, env=e, timeout=60)


def top_level_commands():
    """The commands twofactor --help lists."""
    out = run("--help").stdout
    section = out.split("Subcommands:", 1)[1]
    return [line.split()[0] for line in section.splitlines() if line.startswith("  ") and line.split()]


class UsageErrors(unittest.TestCase):
    def test_typo_names_the_command_meant_and_the_right_help(self):
        r = run("sned")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'sned' (did you mean 'send'?)", r.stderr)
        self.assertIn("see twofactor --help", r.stderr)
        self.assertNotIn("subcommand is required", r.stderr)
        r = run("gdpr", "exprt")
        self.assertEqual(r.returncode, 2)
        self.assertIn("twofactor gdpr: unknown command 'exprt' (did you mean 'export'?)", r.stderr)
        self.assertIn("see twofactor gdpr --help", r.stderr)
        r = run("audit", "lst", "--limit", "3")
        self.assertIn("unknown command 'lst' (did you mean 'list'?)", r.stderr)
        self.assertIn("see twofactor audit --help", r.stderr)

    def test_unrelated_word_gets_no_guess_and_a_missing_command_lists_them(self):
        r = run("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'frobnicate'", r.stderr)
        self.assertNotIn("did you mean", r.stderr)
        r = run("gdpr")
        self.assertEqual(r.returncode, 2)
        self.assertIn("twofactor gdpr: a command is required: export, delete", r.stderr)

    def test_every_listed_command_is_built_when_named(self):
        # A run builds only the command it names; each one listed in --help
        # must be found by its name (an unknown option, not an unknown command).
        commands = top_level_commands()
        self.assertIn("verify", commands)
        self.assertIn("backup", commands)
        for name in commands:
            r = run(name, "--no-such-option")
            self.assertEqual(r.returncode, 2, name)
            self.assertNotIn("unknown command", r.stderr, name)
            self.assertTrue(r.stderr.startswith("twofactor " + name), r.stderr)

    def test_errors_inside_a_command_point_at_its_help(self):
        r = run("verify", "--id", "x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("twofactor verify: --code is required (see twofactor verify --help)", r.stderr)

    def test_help_names_the_default_socket_once_when_there_is_one(self):
        env = dict(os.environ)
        env.pop("XDG_RUNTIME_DIR", None)
        env.pop("TWOFACTOR_SOCKET", None)
        line = run("--help", env=env).stdout.split("twofactord's socket", 1)[1].splitlines()[0]
        paths = re.findall(r"(/[^ ,)]+)", line)
        self.assertTrue(paths, line)
        self.assertEqual(len(paths), len(set(paths)), line)
        env["XDG_RUNTIME_DIR"] = "/run/user/4242"
        line = run("--help", env=env).stdout.split("twofactord's socket", 1)[1].splitlines()[0]
        self.assertIn("/run/user/4242/twofactor/twofactord.sock, else ", line)

    def test_bad_times_name_the_option(self):
        for args in (["audit", "list", "--since"], ["audit", "list", "--until"], ["audit", "export", "--from"],
                     ["audit", "export", "--to"], ["deliveries", "--since"], ["deliveries", "--until"],
                     ["calls", "--since"], ["calls", "--until"], ["stats", "--since"], ["stats", "--until"],
                     ["gdpr", "register", "--subject", "a@example.org", "--kind", "export", "--received"]):
            for bad in ("yesterday", "2027-13-01", "2027-02-29", "2027-01-15T08:00:00", "2027-01-15T25:00:00Z"):
                r = run("--socket", "/nonexistent", *args, bad)
                self.assertEqual(r.returncode, 2, (args, bad))
                self.assertIn("%s: '%s' is not a time" % (args[-1], bad), r.stderr)


class WithDaemon(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(config=CONFIG, clock=T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def records(self, *args):
        r = self.d.cli("--json", "audit", "list", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(l) for l in r.stdout.splitlines()]

    def test_limit_means_the_newest_printed_oldest_first(self):
        d = self.d
        for i in range(3):
            d.send("limit%d@example.org" % i, "shop")
        every = [r["seq"] for r in self.records()]
        self.assertGreater(len(every), 3)
        self.assertEqual([r["seq"] for r in self.records("--limit", "2")], every[-2:])
        for n in ("+4915112345001", "+4915112345002", "+4915112345003"):
            self.assertEqual(d.cli("optout", "add", n).returncode, 0)
            d.set_clock(T0 + 10 + int(n[-1]))
        # Calls at one instant, read from a later one so the reads stay out.
        d.set_clock(T0 + 20)
        d.cli("status", "no-such-request")
        d.cli("deliveries")  # logged; WhoAmI and introspection are not
        d.cli("deliveries")
        d.set_clock(T0 + 30)
        calls = lambda n: [json.loads(l)["method"].rsplit(".", 1)[1] for l in
                           d.cli("--json", "calls", "--until", str(T0 + 30), "--limit", n).stdout.splitlines()]
        self.assertEqual(calls("2"), ["Deliveries", "Deliveries"])
        self.assertEqual(calls("3"), ["Status", "Deliveries", "Deliveries"])
        listed = [json.loads(l)["destination"] for l in d.cli("--json", "optout", "list", "--limit", "2").stdout.splitlines()]
        self.assertEqual(listed, ["+4915112345002", "+4915112345003"])
        for day in ("2027-01-01", "2027-01-05", "2027-01-10"):
            r = d.cli("gdpr", "register", "--subject", "reg%s@example.org" % day, "--kind", "export", "--received", day)
            self.assertEqual(r.returncode, 0, r.stderr)
        got = [json.loads(l)["received"] for l in d.cli("--json", "gdpr", "requests", "--limit", "2").stdout.splitlines()]
        self.assertEqual(got, [1_799_107_200, 1_799_539_200])  # 2027-01-05 and 2027-01-10, midnight UTC

    def test_every_time_form_means_the_same_instant(self):
        d = self.d
        d.send("times@example.org", "shop")
        # 2027-01-15T08:00:00Z in each form; the embedded clock is T0.
        forms = [str(T0), "2027-01-15T08:00:00Z", "2027-01-15T09:00:00+01:00", "2027-01-15t03:00:00.000-05:00",
                 "2027-01-15 08:00:00Z"]
        expected = self.records("--since", str(T0))
        self.assertTrue(expected)
        for form in forms:
            self.assertEqual(self.records("--since", form), expected, form)
        day = self.records("--since", "2027-01-15")
        self.assertEqual(day, self.records("--since", str(T0 - 8 * 3600)))
        for args in (["deliveries", "--since"], ["calls", "--until"]):
            for form in forms:
                r = d.cli(*args, form)
                self.assertEqual(r.returncode, 0, (args, form, r.stderr))
        r = d.cli("audit", "export", "--from", "2027-01-15", "--to", "2027-01-16T00:00:00+00:00")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout)

    def test_future_received_says_why(self):
        r = self.d.cli("gdpr", "register", "--subject", "future@example.org", "--kind", "export",
                       "--received", "2027-03-01")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--received", r.stderr)
        self.assertIn("future", r.stderr)
        self.assertNotIn("invalid received", r.stderr)

    def test_misplaced_fallback_email_names_the_option_and_why(self):
        r = self.d.cli("send", "--app", "shop", "--to", "fb@example.org", "--fallback-email", "x@example.org")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--fallback-email", r.stderr)
        self.assertIn("WhatsApp", r.stderr)
        self.assertNotIn("fallbackEmail", r.stderr)
        r = self.d.cli("send", "--app", "shop", "--to", "+4915112349999", "--fallback-email", "x@example.org")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--fallback-email", r.stderr)
        self.assertIn("falls back to email", r.stderr)
        self.assertNotIn("fallbackEmail", r.stderr)

    def test_whoami_without_passwd_entry(self):
        r = self.d.cli("whoami", user=NO_PASSWD_UID)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[0], "uid %d" % NO_PASSWD_UID)
        r = self.d.cli("whoami")
        self.assertRegex(r.stdout.splitlines()[0], r"^uid %d \(\w+\)$" % os.getuid())

    def test_audit_columns_stay_aligned(self):
        d = self.d
        d.send("cols@example.org", "an-application-with-a-long-name")
        # A second send to the same address is refused by the cooldown: a long outcome.
        d.cli("send", "--app", "shop", "--to", "cols2@example.org")
        d.cli("send", "--app", "shop", "--to", "cols2@example.org")
        r = d.cli("audit", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(any("an-application-with-a-long-name" in l for l in lines))
        self.assertTrue(any(len(l.split()[3]) > 22 for l in lines), r.stdout)  # an outcome wider than usual
        self.assertEqual(len({l.index(" uid ") for l in lines}), 1, r.stdout)

    def test_backup_without_role_is_refused_before_touching_files(self):
        target_dir = tempfile.mkdtemp(prefix="twofactor-backup-")
        os.chmod(target_dir, 0o755)  # not writable by the unmapped uid
        target = os.path.join(target_dir, "copy.db")
        r = self.d.cli("backup", "-o", target, user=NO_PASSWD_UID)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("permission denied", r.stderr)
        self.assertEqual(os.listdir(target_dir), [])
        r = self.d.cli("backup", "-o", target)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.listdir(target_dir), ["copy.db"])


if __name__ == "__main__":
    harness.main()

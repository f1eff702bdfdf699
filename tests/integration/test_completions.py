"""Shell completions generated from the CLI's own command table: the bash
file loads and registers itself, compgen-driven completions of commands,
options, choices, app names (from `twofactor apps`) and request ids (from
the recent deliveries), and the zsh file is valid zsh that completes too."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import harness

BUILD_ROOT = os.environ.get("TWOFACTOR_BUILD_ROOT", "")
BASH = os.path.join(BUILD_ROOT, "packaging", "twofactor")
ZSH = os.path.join(BUILD_ROOT, "packaging", "_twofactor")

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[apps.shop]
[apps.newsletter]
"""


def complete(line, env=None):
    """What bash completes for `line` (the cursor at its end), through the
    generated function, as a user's shell would call it."""
    script = (
        'source "$1"\n'
        'read -ra COMP_WORDS <<< "$2"\n'
        '[[ $2 == *" " ]] && COMP_WORDS+=("")\n'
        'COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n'
        'COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}\n'
        '_twofactor\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "-c", script, "bash", BASH, line], capture_output=True, text=True, timeout=30,
                       env=env)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


@unittest.skipUnless(BUILD_ROOT and os.path.exists(BASH), "needs the generated completions in the build tree")
class Bash(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.table = json.loads(subprocess.run([harness.TWOFACTOR, "--list-commands"], capture_output=True,
                                              text=True, check=True).stdout)
        cls.d = harness.Daemon(config=CONFIG).start()
        # The completion runs `twofactor`: the built one, on this daemon's socket.
        cls.bin = tempfile.mkdtemp(prefix="twofactor-completion-bin-")
        os.symlink(harness.TWOFACTOR, os.path.join(cls.bin, "twofactor"))
        cls.env = dict(os.environ, PATH=cls.bin + ":" + os.environ["PATH"], TWOFACTOR_SOCKET=cls.d.socket)

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.bin, ignore_errors=True)

    def test_registers_itself(self):
        r = subprocess.run(["bash", "-c", 'source "$1"; complete -p twofactor', "bash", BASH],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "complete -F _twofactor twofactor")

    def test_every_command_of_the_table(self):
        self.assertEqual(sorted(complete("twofactor ")), sorted(c["path"] for c in self.table["commands"]))
        for c in self.table["commands"]:
            if c["commands"]:
                self.assertEqual(sorted(complete("twofactor " + c["path"] + " ")),
                                 sorted(s["path"].split(" ")[-1] for s in c["commands"]), c["path"])

    def test_prefixes_and_nested_commands(self):
        self.assertEqual(complete("twofactor se"), ["send"])
        self.assertEqual(set(complete("twofactor st")), {"status", "stats"})
        self.assertIn("rotate", complete("twofactor key "))
        self.assertEqual(complete("twofactor retention r"), ["run"])

    def test_options_of_the_command_and_the_global_ones(self):
        opts = complete("twofactor send --")
        for o in ("--app", "--to", "--channel", "--no-wait", "--fallback-email", "--json", "--socket"):
            self.assertIn(o, opts)
        self.assertNotIn("--dry-run", opts)
        self.assertIn("--dry-run", complete("twofactor retention run --"))
        # After an option's value, commands and options go on as before.
        self.assertIn("--to", complete("twofactor send --app shop --"))

    def test_choices(self):
        self.assertEqual(sorted(complete("twofactor send --channel ")), ["email", "whatsapp"])
        self.assertEqual(complete("twofactor send --purpose re"), ["recovery"])

    def test_app_names_from_the_daemon(self):
        self.assertEqual(sorted(complete("twofactor send --app ", self.env)), ["newsletter", "shop"])
        self.assertEqual(complete("twofactor send --app sh", self.env), ["shop"])

    def test_request_ids_from_recent_sends(self):
        rid = self.d.send("completion@example.org", "shop")
        self.assertIn(rid, complete("twofactor status ", self.env))
        self.assertIn(rid, complete("twofactor verify --id ", self.env))
        # Not where something else belongs.
        self.assertNotIn(rid, complete("twofactor send --to ", self.env))

    def test_quiet_without_a_daemon(self):
        env = dict(self.env, TWOFACTOR_SOCKET=os.path.join(self.bin, "nothing.sock"))
        self.assertEqual(complete("twofactor send --app ", env), [])


@unittest.skipUnless(BUILD_ROOT and os.path.exists(ZSH) and shutil.which("zsh"), "needs zsh and the generated file")
class Zsh(unittest.TestCase):
    def test_valid_zsh(self):
        r = subprocess.run(["zsh", "-n", ZSH], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_completes_commands_and_choices(self):
        # compadd replaced by a recorder: what the function would offer.
        script = (
            'compadd() { setopt localoptions noksharrays; shift; for w in "${(@P)1}"; do print -r -- "$w"; done }\n'
            '_files() { print FILES }\n'
            'source "$1" >/dev/null 2>&1 || true\n'
            'words=(${=2}); [[ $2 == *" " ]] && words+=("")\n'
            'CURRENT=${#words}\n'
            '_twofactor\n')
        def run(line):
            r = subprocess.run(["zsh", "-f", "-c", script, "zsh", ZSH, line], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            return [w for w in r.stdout.splitlines() if w]
        self.assertIn("send", run("twofactor "))
        self.assertIn("rotate", run("twofactor key "))
        self.assertEqual(sorted(run("twofactor send --channel ")), ["email", "whatsapp"])
        self.assertIn("--dry-run", run("twofactor retention run --"))


if __name__ == "__main__":
    harness.main()

"""The README, the man pages and demo.sh say what the binaries do: the README's
first example runs as written, its list of interfaces and twofactord(8)'s
access table match the daemon's method table, demo.sh follows the README's
own advice on email."""
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest

import harness

SOURCE = os.environ.get("TWOFACTOR_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
WHO = {"anyone": "anyone", "operator": "operator, admin", "dpo": "dpo, admin", "admin": "admin"}


def read(*path):
    with open(os.path.join(SOURCE, *path), encoding="utf-8") as f:
        return f.read()


def method_table():
    out = subprocess.run([harness.TWOFACTORD, "--print-methods"], capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines())


class Readme(unittest.TestCase):
    def test_first_example_runs_on_the_embedded_default(self):
        block = re.search(r"```sh\n(.*?)```", read("README.md"), re.S).group(1)
        send = re.search(r"\$\((twofactor send [^)]*)\)", block).group(1)
        verify = re.search(r"\| (twofactor verify [^&]*)&&", block).group(1)
        d = harness.Daemon()  # no configuration: the embedded default
        d.start()
        try:
            r = d.cli(*shlex.split(send)[1:])
            self.assertEqual(r.returncode, 0, r.stderr)
            rid = r.stdout.strip()
            args = [rid if a == '"$id"' or a == "$id" else a for a in shlex.split(verify, posix=False)[1:]]
            r = d.cli(*args, input=d.code_for(rid) + "\n")
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "approved"), r.stderr)
        finally:
            d.cleanup()

    def test_lists_every_interface_the_daemon_serves(self):
        api = read("README.md").split("## API", 1)[1].split("\n## ", 1)[0]
        listed = set(re.findall(r"^- `([A-Za-z.]+)`", api, re.M))
        served = {name.rsplit(".", 1)[0] for name in method_table()}
        declared = set()
        for path in glob.glob(os.path.join(SOURCE, "lib", "ipc", "*.varlink")):
            with open(path) as f:
                declared.add(re.search(r"^interface\s+(\S+)", f.read(), re.M).group(1))
        self.assertEqual(listed, served)
        self.assertEqual(served, declared)


class ManPages(unittest.TestCase):
    def generated(self):
        out = tempfile.NamedTemporaryFile(suffix=".scd", delete=False)
        out.close()
        try:
            subprocess.run([sys.executable, os.path.join(SOURCE, "man", "methods.py"), harness.TWOFACTORD,
                            os.path.join(SOURCE, "man", "twofactord.8.scd"), out.name]
                           + glob.glob(os.path.join(SOURCE, "lib", "ipc", "*.varlink")), check=True)
            with open(out.name, encoding="utf-8") as f:
                return f.read()
        finally:
            os.unlink(out.name)

    def test_access_table_is_the_method_table(self):
        page = self.generated()
        self.assertNotIn("; generated:", page)
        rows = re.findall(r"^\|  (\S+?)\.(\w+(?:, \w+)*)\n:  (.*)$", page, re.M)
        seen = {}
        for iface, methods, who in rows:
            for m in methods.split(", "):
                seen[iface + "." + m] = who
        self.assertEqual(seen, {name: WHO[role] for name, role in method_table().items()})

    def test_interface_list_names_every_method_and_error(self):
        page = self.generated().split("# VARLINK", 1)[1]
        for path in glob.glob(os.path.join(SOURCE, "lib", "ipc", "*.varlink")):
            with open(path) as f:
                text = f.read()
            iface = re.search(r"^interface\s+(\S+)", text, re.M).group(1)
            entry = re.search(r"^\*" + re.escape(iface) + r"\*\n\t(.*)$", page, re.M)
            self.assertIsNotNone(entry, iface)
            for name in re.findall(r"^method\s+(\w+)", text, re.M) + re.findall(r"^error\s+(\w+)", text, re.M):
                self.assertIn("*%s*" % name, entry.group(1), iface)

    def test_built_page_has_the_table(self):
        built = os.path.join(os.path.dirname(os.path.dirname(harness.TWOFACTORD)), "man", "twofactord.8")
        if not os.path.exists(built):
            self.skipTest("man pages not built (-Dman=false)")
        if os.path.getmtime(built) < os.path.getmtime(harness.TWOFACTORD):
            self.skipTest("man pages older than twofactord: not rebuilt yet")
        with open(built, encoding="utf-8") as f:
            page = f.read().replace("\\&", "")  # scdoc's zero-width escapes after dots
        self.assertNotIn("generated:", page)
        for name in method_table():
            self.assertIn(name.rsplit(".", 1)[1], page)
        self.assertIn("io.twofactor.Privacy.BreachReport", page)  # the first of its row


class Demo(unittest.TestCase):
    def test_email_codes_are_sent_for_verify(self):
        # The README: email is no authentication channel; use --purpose verify.
        sends = [l for l in read("demo.sh").splitlines() if re.search(r"twofactor send ", l)]
        self.assertTrue(sends)
        for line in sends:
            self.assertIn("--purpose verify", line)


if __name__ == "__main__":
    harness.main()

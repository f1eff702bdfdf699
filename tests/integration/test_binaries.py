"""The binaries themselves: the CLI stays small, the daemon checks its configuration."""
import os
import subprocess
import tempfile
import unittest

import harness


class Binaries(unittest.TestCase):
    def test_cli_links_no_heavy_libraries(self):
        # The CLI may be linked statically, so look at what it needs at run
        # time and at the symbols it carries, not only at ldd.
        dynamic = subprocess.run(["readelf", "-d", harness.TWOFACTOR], capture_output=True, text=True).stdout
        needed = [line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line]
        for lib in needed:
            self.assertTrue(lib.startswith(("libc.so", "ld-linux", "libm.so")), "the CLI needs " + lib)
        symbols = subprocess.run(["nm", "-C", harness.TWOFACTOR], capture_output=True, text=True)
        self.assertEqual(symbols.returncode, 0, symbols.stderr)
        self.assertIn("twofactor::ipc::Client::connect", symbols.stdout)
        for prefix in ("sqlite3_", "curl_", "i18n::phonenumbers", "boost::", "EVP_", "SSL_"):
            self.assertNotIn(prefix, symbols.stdout)
        # The daemon does carry them: the check above can fail.
        daemon = subprocess.run(["nm", "-C", harness.TWOFACTORD], capture_output=True, text=True).stdout
        self.assertIn("sqlite3_", daemon)

    def test_daemon_loads_libphonenumber_only_for_a_phone_number(self):
        # libphonenumber (with protobuf and ICU: about 4 MiB resident) is in a
        # module of its own, loaded on the first phone number, not at start.
        dynamic = subprocess.run(["readelf", "-d", harness.TWOFACTORD], capture_output=True, text=True).stdout
        self.assertNotIn("libphonenumber", dynamic)
        self.assertIn("(NEEDED)", dynamic)
        d = harness.Daemon().start()  # the embedded default: email and WhatsApp, both to the outbox
        self.addCleanup(d.stop)

        def mapped():
            with open("/proc/%d/maps" % d.proc.pid) as f:
                return f.read()
        d.send("alice@example.org", "default")
        self.assertNotIn("libphonenumber", mapped())
        rid = d.send("+49 151 12345678", "default")
        r = d.cli("status", rid, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("+49151", r.stdout)  # normalised to E.164, masked
        self.assertIn("libphonenumber", mapped())

    def test_cli_help_and_usage_errors(self):
        r = subprocess.run([harness.TWOFACTOR, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for cmd in ("send", "verify", "status", "cancel", "resend", "whoami"):
            self.assertIn(cmd, r.stdout)
        r = subprocess.run([harness.TWOFACTOR, "frobnicate"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([harness.TWOFACTOR, "verify", "--id", "x", "--app", "a", "--to", "b", "--code", "1"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)

    def check(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        try:
            return subprocess.run([harness.TWOFACTORD, "--check-config", "--config", f.name],
                                  capture_output=True, text=True), f.name
        finally:
            os.unlink(f.name)

    def test_check_config_accepts_valid(self):
        r, _ = self.check('[daemon]\nstate_dir = "/tmp/x"\n[apps.shop]\nttl = 300\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("app      shop", r.stdout)

    def test_check_config_names_file_line_and_key(self):
        r, name = self.check('[daemon]\nstate_dir = "/tmp/x"\n\n[apps.shop]\nttl = 5\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn(name + ":5:", r.stderr)
        self.assertIn("apps.shop.ttl", r.stderr)
        r, name = self.check('[apps.shop]\ncolour = "red"\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn(name + ":2:", r.stderr)
        self.assertIn("apps.shop.colour", r.stderr)

    def test_daemon_version_and_bad_flag(self):
        r = subprocess.run([harness.TWOFACTORD, "--version"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("twofactord", r.stdout)
        r = subprocess.run([harness.TWOFACTORD, "--no-such-flag"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)

    def test_embedded_default_found_without_flags(self):
        root = tempfile.mkdtemp()
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), XDG_STATE_HOME=os.path.join(root, "state"))
        env.pop("TWOFACTOR_SOCKET", None)
        os.makedirs(env["XDG_RUNTIME_DIR"])
        d = subprocess.Popen([harness.TWOFACTORD], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            sock = os.path.join(root, "run", "twofactor", "twofactord.sock")
            for _ in range(500):
                if os.path.exists(sock):
                    break
                import time
                time.sleep(0.02)
            r = subprocess.run([harness.TWOFACTOR, "send", "--app", "default", "--to", "me@example.org"],
                               capture_output=True, text=True, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            outbox = os.path.join(root, "state", "twofactor", "outbox", "new")
            self.assertEqual(len(os.listdir(outbox)), 1)
            r = subprocess.run([harness.TWOFACTOR, "whoami"], capture_output=True, text=True, env=env)
            self.assertIn("admin", r.stdout)
        finally:
            d.terminate()
            d.wait(timeout=15)
            import shutil
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    harness.main()

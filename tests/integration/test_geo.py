"""Client IP country rules: a send whose client IP the [geoip] database
places in a denied country, or outside an app's allow list, is refused with
nothing stored or sent; the database is reopened on SIGHUP; a missing one
turns the rules off with a warning. The test writes its own .mmdb files
(the MaxMind DB format, https://maxmind.github.io/MaxMind-DB/)."""
import ipaddress
import os
import signal
import struct
import subprocess
import time
import unittest

import harness


# ---- a small MaxMind DB writer: IPv4 tree, 24-bit records ----

def _control(type_, size):
    """Control byte(s) for a field of `type_` (1..15) with payload `size`."""
    if size < 29:
        head, ext = size, b""
    elif size < 29 + 256:
        head, ext = 29, bytes([size - 29])
    elif size < 285 + 65536:
        head, ext = 30, struct.pack(">H", size - 285)
    else:
        head, ext = 31, struct.pack(">I", size - 65821)[1:]
    if type_ <= 7:
        return bytes([(type_ << 5) | head]) + ext
    return bytes([head, type_ - 7]) + ext


def _encode(value):
    if isinstance(value, str):
        b = value.encode()
        return _control(2, len(b)) + b
    if isinstance(value, dict):
        out = _control(7, len(value))
        for k, v in value.items():
            out += _encode(k) + _encode(v)
        return out
    if isinstance(value, list):
        out = _control(11, len(value))
        for v in value:
            out += _encode(v)
        return out
    if isinstance(value, tuple):  # (type, int): 5 uint16, 6 uint32, 9 uint64
        type_, n = value
        b = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
        return _control(type_, len(b)) + b
    raise TypeError(value)


def write_mmdb(path, networks, database_type="Test-Country"):
    """networks: {"203.0.113.0/24": "DE", ...} -> a Country database."""
    data = b""
    offsets = {}
    for code in sorted(set(networks.values())):
        offsets[code] = len(data)
        data += _encode({"country": {"iso_code": code, "names": {"en": code}}})
    root = [None, None]
    nodes = [root]
    for net, code in networks.items():
        n = ipaddress.ip_network(net)
        bits = int(n.network_address)
        node = root
        for i in range(n.prefixlen):
            bit = (bits >> (31 - i)) & 1
            if i == n.prefixlen - 1:
                node[bit] = ("data", offsets[code])
            else:
                if not isinstance(node[bit], list):
                    node[bit] = [None, None]
                    nodes.append(node[bit])
                node = node[bit]
    index = {id(n): i for i, n in enumerate(nodes)}
    count = len(nodes)

    def record(r):
        if r is None:
            return count
        if isinstance(r, tuple):
            return count + 16 + r[1]
        return index[id(r)]

    tree = b"".join(record(n[0]).to_bytes(3, "big") + record(n[1]).to_bytes(3, "big") for n in nodes)
    metadata = _encode({
        "node_count": (6, count),
        "record_size": (5, 24),
        "ip_version": (5, 4),
        "database_type": database_type,
        "languages": ["en"],
        "binary_format_major_version": (5, 2),
        "binary_format_minor_version": (5, 0),
        "build_epoch": (9, 1764547200),
        "description": {"en": "written by test_geo.py"},
    })
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(tree + b"\0" * 16 + data + b"\xab\xcd\xefMaxMind.com" + metadata)
    os.replace(tmp, path)  # as an operator's download job would: readers never see half a file


NETWORKS = {"203.0.113.0/24": "DE", "198.51.100.0/24": "US", "192.0.2.128/25": "FR"}

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[geoip]
database = "{root}/country.mmdb"

[apps.eu]
allowed_ip_countries = ["DE", "FR"]
[apps.eu.rate_limits]
resend_cooldown = 0

[apps.nous]
denied_ip_countries = ["US"]
[apps.nous.rate_limits]
resend_cooldown = 0
"""


def wait_for_log(d, text, count=1, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if d.read_log().count(text) >= count:
            return True
        time.sleep(0.05)
    return False


class CountryRules(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon(config=CONFIG)
        self.db = os.path.join(self.d.root, "country.mmdb")

    def tearDown(self):
        self.d.cleanup()

    def send(self, app, ip=None, to="geo@example.org"):
        args = ["send", "--app", app, "--to", to]
        if ip:
            args += ["--ip", ip]
        return self.d.cli(*args)

    def test_the_writer_is_read_by_libmaxminddb(self):
        write_mmdb(self.db, NETWORKS)
        if not os.path.exists("/usr/bin/mmdblookup"):
            self.skipTest("mmdb-bin not installed")
        out = subprocess.run(["mmdblookup", "--file", self.db, "--ip", "192.0.2.200", "country", "iso_code"],
                             capture_output=True, text=True).stdout
        self.assertIn('"FR"', out)
        out = subprocess.run(["mmdblookup", "--file", self.db, "--ip", "192.0.2.1"], capture_output=True, text=True)
        self.assertIn("Could not find an entry", out.stdout + out.stderr)

    def test_allow_and_deny(self):
        write_mmdb(self.db, NETWORKS)
        self.d.start()
        self.assertTrue(wait_for_log(self.d, "Test-Country, built 2025-12-01) loaded"), self.d.read_log())
        before = len(self.d.outbox_files())
        r = self.send("eu", "198.51.100.7")
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("does not send for clients in US", r.stderr)
        r = self.send("eu", "10.1.2.3")  # not in the database: outside the allow list
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("clients in unknown", r.stderr)
        r = self.send("eu", "192.0.2.1")  # next to, not in, 192.0.2.128/25
        self.assertEqual(r.returncode, 5, r.stderr)
        r = self.send("nous", "198.51.100.7")
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertEqual(len(self.d.outbox_files()), before, "a refused send was delivered")
        for app, ip in (("eu", "203.0.113.9"), ("eu", "192.0.2.200"), ("nous", "203.0.113.9"), ("nous", "10.1.2.3"),
                        ("eu", None)):
            r = self.send(app, ip)
            self.assertEqual(r.returncode, 0, (app, ip, r.stderr))
        audit = self.d.cli("--json", "audit", "list", "--outcome", "refused:ip-country").stdout
        self.assertEqual(len(audit.splitlines()), 4, audit)
        self.assertIn("client country US", audit)

    def test_sighup_reopens_the_database(self):
        write_mmdb(self.db, NETWORKS)
        self.d.start()
        self.assertEqual(self.send("eu", "198.51.100.7").returncode, 5)
        write_mmdb(self.db, dict(NETWORKS, **{"198.51.100.0/24": "DE"}))
        self.d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for_log(self.d, ") loaded", count=2), self.d.read_log())
        r = self.send("eu", "198.51.100.7")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(self.d.proc.poll(), "SIGHUP stopped the daemon")

    def test_missing_database_disables_the_rules(self):
        self.d.start()
        self.assertTrue(wait_for_log(self.d, "client IP country rules are disabled"), self.d.read_log())
        r = self.send("eu", "198.51.100.7")
        self.assertEqual(r.returncode, 0, r.stderr)
        # Once the file is there, SIGHUP turns them on.
        write_mmdb(self.db, NETWORKS)
        self.d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for_log(self.d, ") loaded"), self.d.read_log())
        self.assertEqual(self.send("eu", "198.51.100.7").returncode, 5)

    def test_a_damaged_database_disables_the_rules(self):
        with open(self.db, "wb") as f:
            f.write(b"not a database")
        self.d.start()
        self.assertTrue(wait_for_log(self.d, "client IP country rules are disabled"), self.d.read_log())
        self.assertEqual(self.send("eu", "198.51.100.7").returncode, 0)

    def test_rules_need_a_database_in_the_configuration(self):
        path = os.path.join(self.d.root, "no-geoip.toml")
        with open(path, "w") as f:
            f.write(CONFIG.replace('[geoip]\ndatabase = "{root}/country.mmdb"\n', "").format(root=self.d.root,
                                                                                            uid=os.getuid()))
        r = subprocess.run([harness.TWOFACTORD, "--config", path, "--check-config"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("apps.eu.allowed_ip_countries: needs [geoip] database", r.stderr)
        self.assertIn("apps.nous.denied_ip_countries: needs [geoip] database", r.stderr)


if __name__ == "__main__":
    harness.main()

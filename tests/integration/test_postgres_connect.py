"""How a node reaches its PostgreSQL server, through the real twofactord: a
multi-host connection string with target_session_attrs=read-write goes past a
server that only reads (a standby, or a primary after a Patroni failover) to
the writable one; sslmode=verify-full is honoured (a server whose certificate
the CA does not sign is refused, with the reason, and the daemon does not
start). Each case starts its own throwaway servers."""
import os
import shutil
import socket
import sys
import tempfile
import unittest

import harness
from test_http import make_tls

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg"))
import pg_server  # noqa: E402

CONFIG = """
[daemon]
state_dir = "{root}/state"
generate_keys = true

[access.admin]
users = ["{uid}"]

[apps.default]

[store]
backend = "postgresql"
dsn_file = "DSN"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dsn_file(directory, dsn):
    path = os.path.join(directory, "store-dsn")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(dsn + "\n")
    return path


@unittest.skipUnless(pg_server.available(), "PostgreSQL 15 is not installed")
class Connect(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="twofactor-pgconnect-")
        os.chmod(self.tmp, 0o755)
        self.servers = []
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.cleanup()
        for s in self.servers:
            s.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, options=""):
        s = pg_server.Server(options=options).start()
        self.servers.append(s)
        return s

    def daemon(self, dsn):
        d = harness.Daemon(config=CONFIG.replace("DSN", dsn_file(self.tmp, dsn)))
        self.daemons.append(d)
        return d

    def test_a_multi_host_string_goes_past_a_read_only_server_to_the_writable_one(self):
        standby = self.server("-c default_transaction_read_only=on")
        primary = self.server()
        hosts = "host=%s,%s user=twofactor dbname=postgres" % (standby.socket_dir, primary.socket_dir)

        # Without the attribute libpq stops at the first server that answers,
        # which cannot take the schema: the daemon says why and does not start.
        d = self.daemon(hosts)
        with self.assertRaises(RuntimeError) as e:
            d.start()
        self.assertIn("read-only transaction", str(e.exception))

        d = self.daemon(hosts + " target_session_attrs=read-write")
        d.start()
        rid = d.send("multi@example.org")
        self.assertEqual(d.cli("verify", "--id", rid, "--code", d.code_for(rid)).returncode, 0)
        self.assertEqual(harness_query(primary, "SELECT count(*) FROM requests"), "1")
        self.assertEqual(harness_query(standby, "SELECT count(*) FROM pg_tables WHERE tablename = 'requests'"), "0")

    def test_b_sslmode_verify_full_checks_the_server_certificate(self):
        certs = os.path.join(self.tmp, "tls")
        ca = make_tls(certs)
        other_ca = make_tls(os.path.join(self.tmp, "other"))
        os.chmod(certs, 0o755)
        port = free_port()
        options = ("-c listen_addresses='127.0.0.1' -c port=%d -c ssl=on -c ssl_cert_file='%s' -c ssl_key_file='%s'"
                   % (port, os.path.join(certs, "server.pem"), os.path.join(certs, "server.key")))
        s = pg_server.Server(options=options)
        for name in ("server.pem", "server.key"):  # the server's user must own its key
            s.give(os.path.join(certs, name))
        s.start()
        self.servers.append(s)
        with open(s.dsn_file, "w") as f:  # its socket is named after the port too
            f.write("%s port=%d\n" % (s.dsn, port))
        tcp = "host=127.0.0.1 port=%d user=twofactor dbname=postgres sslmode=verify-full" % port

        d = self.daemon(tcp + " sslrootcert=" + other_ca)
        with self.assertRaises(RuntimeError) as e:
            d.start()
        self.assertIn("certificate verify failed", str(e.exception))

        d = self.daemon(tcp + " sslrootcert=" + ca)
        d.start()
        rid = d.send("tls@example.org")
        self.assertEqual(d.cli("verify", "--id", rid, "--code", d.code_for(rid)).returncode, 0)
        # Every connection of the daemon's is encrypted.
        ssl = harness_query(s, "SELECT count(*) FILTER (WHERE ssl), count(*) FROM pg_stat_ssl JOIN pg_stat_activity "
                               "USING (pid) WHERE datname = 'postgres' AND pid <> pg_backend_pid() "
                               "AND client_addr IS NOT NULL")
        encrypted, total = ssl.split("|")
        self.assertGreater(int(total), 0)
        self.assertEqual(encrypted, total)


def harness_query(server, sql):
    """SQL on one of this test's servers (its Unix socket, trust authentication)."""
    saved = harness.PG_DSN_FILE
    harness.PG_DSN_FILE = server.dsn_file
    try:
        return harness.pg_query(sql)
    finally:
        harness.PG_DSN_FILE = saved


if __name__ == "__main__":
    harness.main()

#!/usr/bin/env python3
"""A throwaway PostgreSQL server for the test suite: initdb and pg_ctl as an
unprivileged user (initdb refuses root), a Unix socket in a temporary
directory and no TCP listener, fsync=on (the durability the tests rely on
is the real one). Used two ways:

  pg_server.py -- COMMAND ARGS...   starts a server, runs COMMAND with
      TWOFACTOR_TEST_PG_DSN_FILE naming a 0600 file that holds the
      connection string, stops the server, exits with COMMAND's status;
  import pg_server; with pg_server.Server() as pg: ...   from Python tests.

The connection string goes through a file, never argv or the environment
itself: the daemon reads its DSN the same way (the store-dsn credential)."""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

BIN = "/usr/lib/postgresql/15/bin"
USER = "nobody"


def available():
    return os.path.exists(os.path.join(BIN, "initdb")) and os.path.exists(os.path.join(BIN, "pg_ctl"))


class Server:
    def __init__(self, user=USER, options=""):
        """`options`: more server settings ("-c name=value ..."), e.g. a
        read-only default or a TLS listener on 127.0.0.1."""
        self.user = user
        self.options = options
        self.root = None
        self.started = False

    def _run(self, *args, check=True):
        cmd = [os.path.join(BIN, args[0])] + list(args[1:])
        pw = pwd.getpwnam(self.user)

        def demote():
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)

        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": self.root}
        return subprocess.run(cmd, check=check, preexec_fn=demote if os.geteuid() == 0 else None, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def start(self):
        self.root = tempfile.mkdtemp(prefix="tf-pg-")
        os.chmod(self.root, 0o755)
        pw = pwd.getpwnam(self.user)
        if os.geteuid() == 0:
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.root, "data")
        self.socket_dir = self.root
        # The databases sort text as most servers' do, not byte by byte: ICU's
        # English with punctuation ignored at the first level, as glibc's
        # en_US.UTF-8 (which a fresh machine may not have) does. A range or an
        # order that holds only under "C" fails here.
        self._run("initdb", "-D", self.data, "-U", "twofactor", "-A", "trust", "--no-sync", "-E", "UTF8",
                  "--locale-provider=icu", "--icu-locale=en-u-ka-shifted")
        self._run("pg_ctl", "-D", self.data, "-o", self._opts(), "-l", os.path.join(self.root, "log"), "-w", "start")
        self.started = True
        self.dsn = "host=%s user=twofactor dbname=postgres" % self.socket_dir
        self.dsn_file = os.path.join(tempfile.mkdtemp(prefix="tf-pg-dsn-"), "store-dsn")
        fd = os.open(self.dsn_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.dsn + "\n")
        return self

    def stop(self):
        if self.started:
            self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", check=False)
            self.started = False

    def pause(self):
        """Stops the server, keeping its data, until resume()."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def _opts(self):
        return ("-c listen_addresses='' -c unix_socket_directories='%s' -c fsync=on -c max_connections=200 "
                "-c shared_buffers=32MB %s" % (self.socket_dir, self.options))

    def give(self, path):
        """Makes `path` the server user's, for files it must own (a TLS key)."""
        pw = pwd.getpwnam(self.user)
        if os.geteuid() == 0:
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def resume(self):
        self._run("pg_ctl", "-D", self.data, "-o", self._opts(), "-l", os.path.join(self.root, "log"), "-w", "start")

    def restart(self):
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "restart")

    def cleanup(self):
        self.stop()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(os.path.dirname(self.dsn_file), ignore_errors=True)
            self.root = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


def main(argv):
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        sys.exit("usage: pg_server.py -- COMMAND ARGS...")
    command = argv[argv.index("--") + 1:]
    if os.path.exists(command[0]):  # meson passes a built program relative to the working directory
        command[0] = os.path.abspath(command[0])
    if not available():
        print("PostgreSQL 15 is not installed (%s): running without it" % BIN, file=sys.stderr)
        os.execvp(command[0], command)
    with Server() as pg:
        env = dict(os.environ, TWOFACTOR_TEST_PG_DSN_FILE=pg.dsn_file)
        status = subprocess.call(command, env=env)
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv)

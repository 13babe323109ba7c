"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temporary folder, ``pg_ctl`` starts it
on 127.0.0.1 (a free port) and a unix socket in that folder, one database per test, stopped at the end.

The binaries are found with ``pg_config --bindir`` or under /usr/lib/postgresql/<version>/bin (Debian's
``postgresql`` package, which ``scripts/system-deps.sh`` installs when missing).  PostgreSQL refuses to
run as root: as root the cluster belongs to the unprivileged ``postgres`` user (created by that
package) and its commands run through ``runuser``; as any other user they run directly.  The cluster
runs without fsync (a test cluster need not survive a power cut) and with password authentication
on TCP, so the tests' URLs carry a password, as production URLs from the environment do.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: The superuser of the test cluster.
USER = "kbsearch"


def bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres (newest version first); AssertionError if none."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])
                         if p.split("/")[-2].isdigit() else 0, reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").resolve().parent))
    for folder in candidates:
        if folder and all((Path(folder) / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    raise AssertionError("PostgreSQL's server binaries were not found (initdb, pg_ctl, postgres): run "
                         "scripts/system-deps.sh, which installs Debian's postgresql package")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """One running cluster; `database` makes a fresh database and returns its URL."""

    def __init__(self) -> None:
        self.bin = bindir()
        self.as_root = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="kbsearch-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.password = secrets.token_urlsafe(12)
        self._count = 0
        if self.as_root:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        os.chmod(self.folder, 0o700)
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_root:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile), "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        pwfile.unlink()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
                   "-c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-s", "-o", options,
                  "-l", str(self.folder / "server.log"), "start")
        import psycopg

        self.admin = psycopg.connect(self.url("postgres"), autocommit=True)
        # FILE_COPY (PostgreSQL 15+) copies the small template faster than the default WAL_LOG.
        self._strategy = " STRATEGY FILE_COPY" if self.admin.info.server_version >= 150000 else ""

    def _run(self, binary: str, *args: str) -> None:
        command = [str(self.bin / binary), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"{binary} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def url(self, database: str, *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database (its URL, password included)."""
        self._count += 1
        name = f"t{self._count}_{int(time.time() * 1000) % 100000}"
        self.admin.execute(f'CREATE DATABASE "{name}"{self._strategy}')
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url``, ending its sessions (pools a test left open)."""
        name = url.rsplit("/", 1)[1]
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        self.admin.close()
        try:
            self._run("pg_ctl", "-D", str(self.data), "-s", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

"""A real, throwaway PostgreSQL server for the test session: initdb into a temporary folder, pg_ctl
start on a free loopback port, one fresh database per test that asks, everything removed at the end.

The server binaries are found on PATH or through ``pg_config --bindir``; as root they run as the
``postgres`` user (PostgreSQL refuses to run as root). Durability is switched off: nothing here
needs to survive a crash, and fsync would only slow the tests down.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

SERVER_USER = "postgres"


def server_binaries() -> tuple[Path | None, str]:
    """(the folder holding initdb and pg_ctl, or None with the reason none was found)."""
    candidates = []
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    if shutil.which("pg_config"):
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder, ""
    return None, "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under `pg_config --bindir`"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One running server; ``url(name)`` names a database on it, ``new_database()`` makes one."""

    def __init__(self, bindir: Path, root: Path, port: int):
        self.bindir, self.root, self.port = bindir, root, port
        self.data = root / "data"

    @classmethod
    def start(cls) -> "PostgresServer":
        bindir, why = server_binaries()
        if bindir is None:
            raise RuntimeError(why)
        root = Path(tempfile.mkdtemp(prefix="facerec-pg-"))
        server = cls(bindir, root, free_port())
        as_root = os.geteuid() == 0
        if as_root:  # the server refuses to run as root: hand it the folder and run it as postgres
            user = pwd.getpwnam(SERVER_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
        os.chmod(root, 0o700)
        # C.UTF-8: byte-order collation, but Unicode-aware lower() and upper(), as a production locale.
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--locale=C.UTF-8", "--no-sync")
        options = (f"-p {server.port} -k {server.data} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        server._run("pg_ctl", "-D", str(server.data), "-l", str(root / "server.log"), "-o", options, "-w",
                    "-t", "60", "start")
        return server

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr[-2000:]}"
                               + (log.read_text()[-2000:] if log.exists() else ""))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"facerec_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

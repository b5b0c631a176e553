"""A real, throwaway PostgreSQL server for the label-store tests.

Uses the server binaries of Debian's `postgresql` package (/usr/lib/postgresql/*/bin):
initdb a cluster in a temporary folder, start it on a free port, and drop it afterwards.
PostgreSQL refuses to run as root, so as root (CI) the cluster belongs to the `postgres`
user the package creates. Skips with a reason where no binaries are installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a running server (user `sentitune`, no password, local only)."""
    binaries = _bin_dir()
    if binaries is None:
        pytest.skip("needs PostgreSQL's server binaries (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="needs psycopg (pip install 'sentitune[labels]')")
    # Under /tmp, not pytest's folder: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="sentitune-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data = root / "cluster"
    port = _free_port()
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "sentitune",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-l",
                    str(root / "log"), "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://sentitune@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name

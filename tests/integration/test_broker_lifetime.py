"""The embedded broker never outlives its parent, and a stale one left on a data dir is reaped (issue 16,
point 2). Real tansu processes, real parent processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.broker import EmbeddedBroker, free_port, tansu_binary
from tests.processes import alive, wait_dead

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]




@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_broker_dies_with_a_killed_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "broker.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from ops.broker import EmbeddedBroker; "
         "b = EmbeddedBroker(pid_file=Path(sys.argv[1])); b.start(); print('ready', flush=True); time.sleep(600)",
         str(pid_file)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"ready"
        broker = int(pid_file.read_text())
        assert alive(broker)
        parent.kill()  # SIGKILL: no clean-up code of the parent runs
        parent.wait()
        assert wait_dead(broker), "the broker outlived its SIGKILLed parent"
    finally:
        parent.kill()


def test_stale_broker_on_the_data_dir_is_reaped(tmp_path: Path) -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    stale = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                              "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a broker left running: listening, long past its exec
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        pid_file = tmp_path / "broker.pid"
        pid_file.write_text(f"{stale.pid}\n")
        with EmbeddedBroker(pid_file=pid_file) as fresh:
            assert stale.wait(timeout=10) is not None, "the stale broker still runs"
            assert int(pid_file.read_text()) == fresh.pid != stale.pid
        assert not pid_file.exists()
    finally:
        stale.kill()
        stale.wait()


def test_a_pid_file_naming_another_process_kills_nothing(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = tmp_path / "broker.pid"
        pid_file.write_text(f"{other.pid}\n")
        with EmbeddedBroker(pid_file=pid_file):
            assert other.poll() is None
    finally:
        other.kill()
        other.wait()

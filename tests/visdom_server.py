"""Pytest plugin: a real visdom server, started offline once per test session.

Register it in ``tests/conftest.py`` with ``pytest_plugins = ["tests.visdom_server"]``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0
# `python -m visdom.server` downloads its web scripts first and dies offline; main() does not.
_SERVER_CODE = "from visdom.server.run_server import main; main()"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    """True once something accepts TCP connections on ``HOST:port``."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def serve_visdom(env_path: Path) -> Iterator[tuple[str, int]]:
    """Run a visdom server keeping its envs in ``env_path``; yield ``(server_url, port)``.

    The server listens only once it is fully set up, so an accepted TCP connection means
    it is ready. Its output goes to a log file beside ``env_path``, shown if it fails to start.
    """
    log = env_path.parent / f"{env_path.name}-server.log"
    port = free_port()
    command = [
        sys.executable, "-c", _SERVER_CODE, "-port", str(port), "--hostname", HOST,
        "-env_path", str(env_path), "-bind_local", "-logging_level", "WARNING",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _listening(port):
            if process.poll() is not None:
                pytest.fail(f"visdom server exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"visdom server not up after {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield f"http://{HOST}", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def visdom_env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory where the session's visdom server writes saved envs (``<env>.json``)."""
    return tmp_path_factory.mktemp("visdom_envs")


@pytest.fixture(scope="session")
def visdom_server(visdom_env_dir: Path) -> Iterator[tuple[str, int]]:
    """Yield ``(server_url, port)`` of a visdom server shared by the whole session."""
    with serve_visdom(visdom_env_dir) as address:
        yield address

"""Run a service as a real uvicorn subprocess on a loopback port (for tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A started service: its base URL, process and log file."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen, log: Path):
        self.name, self.port, self.proc, self.log = name, port, proc, log
        self.url = f"http://127.0.0.1:{port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def launch(name: str, *, log_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
           port: int | None = None) -> Service:
    """Start `python -m cascade serve NAME --port P` with CASCADE_* settings from `env` (does not wait)."""
    port = port or free_port()
    log = log_dir / f"{name}-{port}.log"
    full_env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-m", "cascade", "serve", name, "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Service(name, port, proc, log)


def wait_ready(service: Service, timeout: float = 180.0) -> Service:
    """Poll /readyz until 200; a process that exits or never gets ready raises with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                return service
        time.sleep(0.3)
    service.stop()
    raise RuntimeError(f"{service.name} not ready after {timeout} s:\n{service.log.read_text()[-3000:]}")


def start_service(name: str, *, ready_timeout: float = 180.0, **kw) -> Service:
    return wait_ready(launch(name, **kw), ready_timeout)


@contextlib.contextmanager
def running_service(name: str, **kw) -> Iterator[Service]:
    service = start_service(name, **kw)
    try:
        yield service
    finally:
        service.stop()

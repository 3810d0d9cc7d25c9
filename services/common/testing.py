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


JFK_WORDS = "ask not what your country can do for you"
"""What every recogniser must hear in ../shared/data/real/jfk.flac, as `plain_words` writes it."""


def plain_words(text: str) -> str:
    """Lower-case letters, digits and single spaces: a transcript compared without its punctuation."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def relay_to(url: str) -> tuple[str, ...]:
    """A gateway's arguments that send ASR, LLM and TTS to the services at `url` (e.g. another gateway)."""
    return ("--asr-url", url, "--llm-url", url, "--tts-url", url)


@contextlib.contextmanager
def running_service(name: str, **kw) -> Iterator[Service]:
    service = start_service(name, **kw)
    try:
        yield service
    finally:
        service.stop()


# --------------------------------------------------------------------------- fault doubles (tests, benchmarks)

FAULTS = ("close", "garbage", "schema", "trickle", "slow_headers", "blackhole")
"""How a FaultServer misbehaves: closes each connection at once without answering (a dead
upstream), 200 with a non-JSON body, 200 with JSON of the wrong shape, 200 whose body arrives one
byte every `interval` seconds, a status line and headers that arrive that way, or a socket that
accepts and never answers."""


class FaultServer:
    """A loopback HTTP upstream that misbehaves on purpose (real parts cannot be made to on demand).

    It answers every request the same way, whatever the path; `url` is its base URL. Assign
    `fault` to switch behaviour between requests (one upstream URL, several faults).
    """

    def __init__(self, fault: str, *, interval: float = 1.0):
        import socketserver
        import threading

        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        self.fault, self.interval, self._stop = fault, interval, threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _read_request(sock)
            if self.fault == "close":
                return
            if self.fault == "blackhole":
                self._stop.wait()
                return
            body = b"<html>upstream proxy error</html>" if self.fault == "garbage" else b'{"ok": true, "result": 42}'
            if self.fault == "trickle":
                body = b'{"text": "' + b"a" * 4000 + b'"}'
            ctype = b"text/html" if self.fault == "garbage" else b"application/json"
            head = b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: " + str(len(body)).encode()
            head += (b"\r\nX-Pad: " + b"a" * 4000 if self.fault == "slow_headers" else b"") + b"\r\n\r\n"
            if self.fault == "slow_headers":  # everything, status line first, one byte at a time
                body, head = head + body, b""
            sock.sendall(head)
            if self.fault not in ("trickle", "slow_headers"):
                sock.sendall(body)
                return
            for byte in body:
                if self._stop.wait(self.interval):
                    return
                sock.sendall(bytes([byte]))

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_request(sock: socket.socket) -> None:
    """Consume one request's head and Content-Length body (enough for the clients under test)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return
        rest += chunk


def dead_url() -> str:
    """A loopback URL nothing listens on (connection refused at once)."""
    return f"http://127.0.0.1:{free_port()}"

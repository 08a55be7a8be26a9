"""Real processes for topology tests: uvicorn API replicas and `curator worker`s."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "service"), str(ROOT / "client"),
                                         env.get("PYTHONPATH", "")])
    return env


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in kill()/stop()
        self.p = subprocess.Popen(args, env=child_env(env), stdout=self._fh,
                                  stderr=subprocess.STDOUT, cwd=ROOT)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()
        self._fh.close()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._fh.close()


def start_api(env: dict[str, str], log: Path, port: int | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    proc = Proc([sys.executable, "-m", "uvicorn", "curator.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                env, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"API exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"API did not start: {log.read_text()[-2000:]}")


def start_worker(env: dict[str, str], log: Path) -> Proc:
    proc = Proc([sys.executable, "-m", "curator.cli", "worker"], env, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # ready once it prints its consumer line
        if proc.p.poll() is not None:
            raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
        if b"consuming" in log.read_bytes():
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

"""Real servers and processes for the worker tests, each started and stopped by the test.

- `LetheProcess`: `python -m service.cli <command>` (`worker`, `gateway`, `serve`) in its own
  process group, so a test can SIGKILL a worker with its task child, as a lost machine would.
- `PrivateRedis`: a redis-server of our own on a free port, persistence on (AOF), which a
  test may restart (never the shared one on 6379).
- `TcpProxy`: a loopback TCP relay a test can cut and restore: the database "goes away".
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout_s: float, what: str, every_s: float = 0.1):
    """Poll `condition()` until it returns something true; fail with `what` after `timeout_s`."""
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class LetheProcess:
    """One `lethe` command as a child process, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = Path(log)
        self._log_file = open(self.log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args], env=env,
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout_s: float = 60.0) -> None:
        def seen():
            if self.process.poll() is not None:
                raise AssertionError(f"process exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            return text in self.output()

        wait_until(seen, timeout_s, f"{text!r} in {self.log.name}")

    def kill(self) -> None:
        """SIGKILL the whole group (the worker and its task child): nothing gets to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM and a grace period (`serve` stops its worker then), then SIGKILL."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self._log_file.close()


    def close(self) -> None:
        """Kill the group at once, for a test that is over: no warm shutdown (an idle `serve` takes
        7-10 s to stop its worker). A `serve`'s worker, in a session of its own, is not in the
        group: it stops itself once it sees `serve` gone (service/cli/server.py)."""
        self.kill()
        self._log_file.close()


class WorkerProcess(LetheProcess):
    def stop(self, grace_s: float = 0.0) -> None:
        """Tests need no warm shutdown (it waits for the pool): kill the group at once."""
        self.close()


def start_worker(env: dict[str, str], log: Path) -> LetheProcess:
    worker = WorkerProcess(["worker"], env, log)
    worker.wait_for_output(" ready.")
    return worker


def start_http(command: str, env: dict[str, str], log: Path) -> tuple[LetheProcess, str]:
    """`lethe gateway` or `lethe serve` on a free loopback port; returns it and its base URL."""
    port = free_port()
    server = LetheProcess([command, "--host", "127.0.0.1", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"

    def live():
        if server.process.poll() is not None:
            raise AssertionError(f"{command} exited:\n{server.output()[-3000:]}")
        try:
            return httpx.get(f"{url}/livez", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(live, 60, f"lethe {command} to answer")
    return server, url


class PrivateRedis:
    """A redis-server of this test's own, persisting every write to its append-only file."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: answers(self.port), 10, "the private redis-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes its AOF and exits
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


class TcpProxy:
    """Relays 127.0.0.1:<port> to a target port; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            _close(connection)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(target)


def _close(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()

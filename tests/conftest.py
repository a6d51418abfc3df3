"""Shared test fixtures: real processes on loopback, never mocks.

`require_binary(name)` skips a test when a server binary is missing on a developer's machine, and
FAILS it when ENTLOAD_REQUIRE_BINARIES is set (as `.ci/run` does), so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REQUIRE_BINARIES = bool(os.environ.get("ENTLOAD_REQUIRE_BINARIES"))


def require_binary(name: str) -> str:
    """Path of `name`; skip if missing, or fail under CI (ENTLOAD_REQUIRE_BINARIES=1)."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path:
        return path
    msg = f"binary {name!r} not found (Debian packages are installed by `make test` when run as root)"
    if REQUIRE_BINARIES:
        pytest.fail(msg + "; ENTLOAD_REQUIRE_BINARIES is set, so this is a failure, not a skip")
    pytest.skip(msg)


def shared_file(*parts: str) -> Path:
    """A file of ../shared (data, reference); missing shared/ is a failure under CI."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if REQUIRE_BINARIES:
            pytest.fail(f"{path} is missing")
        pytest.skip(f"{path} is missing")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers (any HTTP status), the process dies, or the timeout passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Staging:
    """A running embedded staging ENT (real uvicorn), with its Enseigno twin."""

    url: str
    enseigno_url: str
    proc: subprocess.Popen
    workdir: Path
    access_log: Path
    args: list[str] = field(default_factory=list)


def start_staging(workdir: Path, *extra: str, timeout: float = 30.0) -> Staging:
    """Start `entload staging` on free loopback ports and wait until /healthz answers on both apps."""
    port, eport = free_port(), free_port()
    access_log = workdir / f"access-{port}.log"
    args = [
        sys.executable, "-m", "entload", "staging",
        "--host", "127.0.0.1", "--port", str(port), "--enseigno-port", str(eport),
        "--access-log", str(access_log), *extra,
    ]
    out = open(workdir / f"staging-{port}.out", "wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url, eurl = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{eport}"
    out_path = workdir / f"staging-{port}.out"
    try:
        wait_http(url + "/healthz", timeout, proc)
        wait_http(eurl + "/healthz", timeout, proc)
        # /healthz answers as soon as one worker is up; `ready` is printed once all of them are.
        deadline = time.monotonic() + timeout
        while b"ready" not in out_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("staging ENT never printed its ready line")
            time.sleep(0.05)
    except Exception:
        stop_process(proc)
        raise RuntimeError(out_path.read_text(errors="replace")[-2000:]) from None
    return Staging(url, eurl, proc, workdir, access_log, args)


@pytest.fixture
def staging_factory(tmp_path) -> Iterator:
    """Call it with extra `entload staging` arguments; every server started is stopped at teardown."""
    started: list[Staging] = []

    def _start(*extra: str, timeout: float = 30.0) -> Staging:
        s = start_staging(tmp_path, *extra, timeout=timeout)
        started.append(s)
        return s

    yield _start
    for s in started:
        stop_process(s.proc)


@pytest.fixture(scope="module")
def staging(tmp_path_factory) -> Iterator[Staging]:
    """One default staging ENT shared by a test module."""
    s = start_staging(tmp_path_factory.mktemp("staging"))
    yield s
    stop_process(s.proc)

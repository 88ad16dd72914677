"""Starts a real `agentwire dev` for the test session (its binary: $AGENTWIRE_BIN, or the
workspace's target/debug/agentwire) and runs `async def` tests on asyncio."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), timeout=60))
        return True
    return None


class Server:
    def __init__(self, url: str, data_dir: Path, binary: str) -> None:
        self.url = url
        self.data_dir = data_dir
        self.binary = binary

    def token(self, *args: str) -> str:
        """A token minted by `agentwire token` against this server's data directory."""
        out = subprocess.run(
            [self.binary, "token", "--data-dir", str(self.data_dir), *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip().splitlines()[-1]


def start(binary: str, data_dir: Path, *flags: str) -> "tuple[subprocess.Popen[str], str]":
    log = open(data_dir.with_suffix(".log"), "w")
    process = subprocess.Popen(
        [binary, "dev", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *flags],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = process.stdout.readline()
        if line.startswith("agentwire dev listening on "):
            return process, line.split()[-1]
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"agentwire dev did not start; see {log.name}")


@pytest.fixture(scope="session")
def binary() -> str:
    path = os.environ.get("AGENTWIRE_BIN", str(ROOT / "target" / "debug" / "agentwire"))
    if not Path(path).exists():
        raise RuntimeError(f"no agentwire binary at {path}: cargo build -p agentwire")
    return path


@pytest.fixture(scope="session")
def server(binary: str) -> Iterator[Server]:
    """An `agentwire dev` without tokens (the tests of tokens start their own)."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        process, url = start(binary, data_dir, "--insecure", "--no-demo-agent")
        try:
            yield Server(url, data_dir, binary)
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def secured(binary: str) -> Iterator[Server]:
    """An `agentwire dev` that checks tokens."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        process, url = start(binary, data_dir, "--no-demo-agent")
        try:
            yield Server(url, data_dir, binary)
        finally:
            process.terminate()
            process.wait(timeout=10)


_counter = [0]


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A session name of its own for each test."""
    _counter[0] += 1
    return f"chat-{request.node.name.replace('_', '-')[:40]}-{os.getpid()}-{_counter[0]}"

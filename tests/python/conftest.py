"""Fixtures of the server's Python tests: the real `jielong serve` on loopback.

The binary comes from $JIELONG_BIN, else the release build in $CARGO_TARGET_DIR (or ./target).
Screenshots and other artefacts go to $JIELONG_ARTIFACTS, else <target>/serve-artifacts.
"""

import json
import os
import pathlib
import queue
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
TEXT, IMAGE, AUDIO = "shakespeare-char", "mnist-binary", "spoken-digits"


def audio_rate() -> int:
    """The shipped audio model's sample rate, from its config.json."""
    return json.loads((ROOT / "models" / AUDIO / "config.json").read_text())["codec"]["rate"]


def audio_default_temperature() -> float:
    """The shipped audio model's own default temperature (1 when its config.json names none)."""
    config = json.loads((ROOT / "models" / AUDIO / "config.json").read_text())
    return config.get("generation", {}).get("temperature", 1.0)


def binary() -> str:
    path = os.environ.get("JIELONG_BIN") or str(TARGET / "release" / "jielong")
    if not os.path.exists(path):
        pytest.exit(f"no jielong binary at {path}: build it (cargo build --release) or set JIELONG_BIN", 2)
    return path


def artifacts() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("JIELONG_ARTIFACTS", TARGET / "serve-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class Server:
    """`jielong serve` with the three shipped models; `stop()` kills it."""

    def __init__(self, *extra: str, env: dict | None = None):
        cmd = [binary(), "serve", "--port", "0"]
        for m in (TEXT, IMAGE, AUDIO):
            cmd += ["--model", str(ROOT / "models" / m)]
        cmd += list(extra)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stderr], daemon=True).start()
        seen = []
        while True:
            try:
                line = lines.get(timeout=120)
            except queue.Empty:
                self.stop()
                raise RuntimeError("the server did not start:\n" + "".join(seen))
            if "listening on " in line:
                self.base = line.split("listening on ", 1)[1].strip()
                return
            seen.append(line)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def keyed_server():
    s = Server("--api-key", "sesame")
    yield s
    s.stop()

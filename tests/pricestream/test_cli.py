"""The command as users start it: a real process, real HTTP, real signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

PYTHON = sys.executable


def pricestream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "pricestream", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


@contextmanager
def running(data_dir: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "pricestream", "run", "--port", "0", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        assert match, f"no URL printed: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        yield match.group(1), proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        return orjson.loads(resp.read())


METALS = {"XAU-USD", "XAG-USD", "XPT-USD", "XPD-USD"}
T = TypeVar("T")


def until(fetch: Callable[[], T], ok: Callable[[T], bool], what: str, timeout_s: float = 10) -> T:
    """Call ``fetch`` every 0.1 s until ``ok`` of its answer, at most ``timeout_s``; the answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = fetch()
        if ok(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s:g} s; last: {str(got)[:300]}")
        time.sleep(0.1)


def wait_for_metals(url: str, timeout_s: float = 10) -> None:
    until(
        lambda: get_json(url + "api/v1/symbols"),
        lambda body: isinstance(body, list) and {q["symbol"] for q in body} == METALS,
        "not every metal appeared",
        timeout_s,
    )


def candles(url: str, res: str, limit: int) -> list[dict[str, Any]]:
    body = get_json(url + f"api/v1/symbols/XAU-USD/candles?res={res}&limit={limit}")
    assert isinstance(body, dict)
    return list(body["candles"])


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_help_explains_the_commands() -> None:
    top = pricestream("--help")
    assert top.returncode == 0
    assert "run" in top.stdout
    run = pricestream("run", "--help")
    assert run.returncode == 0
    for flag in ("--host", "--port", "--data-dir", "--config", "PRICESTREAM_"):
        assert flag in run.stdout
    assert "ingest, stream, web and render" in " ".join(run.stdout.split())
    version = pricestream("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"pricestream \d+\.\d+\.\d+\S*\n", version.stdout), version.stdout


def test_an_unknown_option_is_refused_with_the_commands_own_usage() -> None:
    result = pricestream("run", "--bogus")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: pricestream run ")
    assert "pricestream run: error: unrecognized arguments: --bogus" in result.stderr


def test_run_serves_the_api_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    with running(tmp_path / "data") as (url, proc):
        wait_for_metals(url)
        err = stop(proc)
    assert "draining" in err
    assert "stopped" in err
    assert (tmp_path / "data" / "pricestream.db").exists()


def test_a_fresh_start_has_history_and_a_restart_continues_it_and_the_prices(
    tmp_path: Path,
) -> None:
    started_ms = time.time() * 1000
    with running(tmp_path / "data") as (url, proc):
        wait_for_metals(url)
        # 90 days of simulated history: daily candles within seconds
        days = until(lambda: candles(url, "1d", 500), lambda c: len(c) >= 90, "no 90 days", 20)
        first = until(  # and live ticks after it
            lambda: candles(url, "1s", 5000),
            lambda c: c[-1]["start_ms"] > started_ms + 1_000,
            "no live ticks",
        )
        stop(proc)
    first_starts = [c["start_ms"] for c in first]
    last_close = first[-1]["close"]
    with running(tmp_path / "data") as (url, proc):
        later = until(  # live ticks after the restart
            lambda: candles(url, "1s", 5000),
            lambda c: c[-1]["start_ms"] > first_starts[-1],
            "no live ticks after the restart",
        )
        days_later = candles(url, "1d", 500)
        err = stop(proc)
    later_starts = [c["start_ms"] for c in later]
    assert set(first_starts[-100:-1]) <= set(later_starts)  # the newest second candles kept
    # no second history: the past days are exactly as they were, today has gone on
    assert days_later[:-1] == days[:-1]
    assert "continue from their stored prices" in err
    new = [c for c in later if c["start_ms"] > first_starts[-1]]
    assert abs(new[0]["open"] / last_close - 1) < 0.002  # no jump back to the first-ever level


def test_a_bad_setting_is_refused_with_the_key_named(tmp_path: Path) -> None:
    result = pricestream("run", env={"PRICESTREAM_STREAM_GRACE_MS": "soon"})
    assert result.returncode == 2
    assert "stream.grace_ms" in result.stderr
    assert "PRICESTREAM_STREAM_GRACE_MS" in result.stderr
    config = tmp_path / "p.toml"
    config.write_text("[server]\nprot = 1\n")
    result = pricestream("run", "--config", str(config))
    assert result.returncode == 2
    assert "server.prot" in result.stderr
    config.write_text("[stream]\ngrace_ms = -5\n")
    result = pricestream("run", "--config", str(config))
    assert result.returncode == 2
    assert f"stream.grace_ms must be 0..3600000, got -5 (set in {config})" in result.stderr
    result = pricestream("run", env={"PRICESTREAM_AUTH_JWT_SECRET": "short"})
    assert "(set in environment variable PRICESTREAM_AUTH_JWT_SECRET)" in result.stderr
    assert "short" not in result.stderr  # a secret is never echoed


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = pricestream("run", "--port", str(port), "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert f"port {port} is taken: choose another with --port" in result.stderr


@pytest.mark.parametrize("flag", ["--no-simulator"])
def test_without_the_simulator_nothing_is_quoted(tmp_path: Path, flag: str) -> None:
    with running(tmp_path / "data", flag) as (url, proc):
        time.sleep(0.5)
        assert get_json(url + "api/v1/symbols") == []
        stop(proc)


def test_a_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = pricestream("run", "--port", "0", "--data-dir", str(blocker))
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "Traceback" not in result.stderr

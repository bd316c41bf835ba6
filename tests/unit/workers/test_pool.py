"""The supervisor's pool of worker processes, with stand-in workers: tiny Python processes
that read their spec and then serve (say ready and wait), fail (exit 2 before ready), or
serve and ignore SIGTERM, as each test's script for their number says. The real workers
are tested in tests/integration/test_workers.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from daxproxy.core.config import Settings
from daxproxy.workers.supervisor import WorkerFailed, WorkerPool

# Reads the pickled spec, then acts as ``behaviours[number]`` says: "serve", "fail" (exit 2
# at once, or after the first start with "serve-then-fail"), "stubborn" (ignores SIGTERM).
STAND_IN = """
import os, pickle, signal, sys, json, time
spec = pickle.load(sys.stdin.buffer)
behaviours, log = json.loads(sys.argv[1]), sys.argv[2]
behaviour = behaviours.get(str(spec.number), "serve")
with open(log, "a") as f:
    f.write(f"{spec.number} {os.getpid()}\\n")
starts = sum(1 for line in open(log) if line.split()[0] == str(spec.number))
if behaviour == "fail" or (behaviour == "serve-then-fail" and starts > 1):
    sys.exit(2)
if behaviour == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.write(1, b"ready\\n")
while True:
    time.sleep(60)
"""


def pool_of(tmp_path: Path, count: int, **behaviours: str) -> tuple[WorkerPool, Path]:
    log = tmp_path / "starts.log"
    log.touch()
    pool = WorkerPool(Settings(), None, count, str(tmp_path))
    pool.command = (sys.executable, "-c", STAND_IN, json.dumps(behaviours), str(log))
    return pool, log


def starts(log: Path) -> list[tuple[int, int]]:
    return [
        (int(n), int(pid))
        for n, pid in (line.split() for line in log.read_text().split("\n") if line)
    ]


async def until(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_workers_start_first_one_then_the_others(tmp_path: Path) -> None:
    pool, log = pool_of(tmp_path, 3)
    try:
        await pool.start()
        assert pool.serving() == 3
        assert starts(log)[0][0] == 1
    finally:
        await pool.stop(5)
    assert pool.serving() == 0


async def test_a_first_worker_that_cannot_start_stops_the_start_up_alone(tmp_path: Path) -> None:
    pool, log = pool_of(tmp_path, 3, **{"1": "fail"})
    try:
        with pytest.raises(WorkerFailed) as failed:
            await pool.start()
        assert (failed.value.number, failed.value.code) == (1, 2)
        assert [n for n, _ in starts(log)] == [1]  # the others were never started
    finally:
        await pool.stop(5)


async def test_another_worker_that_cannot_start_stops_the_start_up(tmp_path: Path) -> None:
    pool, _ = pool_of(tmp_path, 3, **{"3": "fail"})
    try:
        with pytest.raises(WorkerFailed) as failed:
            await pool.start()
        assert failed.value.number == 3
    finally:
        await pool.stop(5)


async def test_a_dead_worker_is_started_again_under_its_number_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pool, log = pool_of(tmp_path, 2)
    try:
        await pool.start()
        (two, second) = sorted(starts(log))[1]
        os.kill(second, signal.SIGKILL)
        await until(lambda: len(starts(log)) == 3 and pool.serving() == 2, "not restarted")
        assert pool.restarts == 1
        number, replacement = starts(log)[-1]
        assert (number, two) == (2, 2) and replacement != second
        assert f"worker 2 (pid {second}) exited with signal SIGKILL" in caplog.text
        assert f"worker 2 (pid {replacement}) serving again after" in caplog.text
    finally:
        await pool.stop(5)


async def test_a_worker_that_keeps_failing_is_retried_after_a_pause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pool, log = pool_of(tmp_path, 2, **{"2": "serve-then-fail"})
    try:
        await pool.start()
        os.kill(starts(log)[-1][1], signal.SIGKILL)
        await until(lambda: "trying again in 1 s" in caplog.text, "no growing pause")
        assert "worker 2 exited with code 2 before serving; trying again in 0.5 s" in caplog.text
        assert pool.restarts == 1 and pool.serving() == 1  # one death, however many tries
    finally:
        await pool.stop(5)


async def test_stop_kills_a_worker_still_running_past_the_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool, log = pool_of(tmp_path, 2, **{"2": "stubborn"})
    await pool.start()
    began = time.monotonic()
    await pool.stop(0.5)
    assert time.monotonic() - began < 5
    stubborn = dict(starts(log))[2]
    assert f"worker (pid {stubborn}) still running; killing it" in caplog.text
    with pytest.raises(ProcessLookupError):
        os.kill(stubborn, 0)

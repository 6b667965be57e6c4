"""A build stage in a process of its own: its result and peak memory come back, its errors are raised in
the build with their type, and it never outlives the build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.errors import InvalidInput, ProcessDied
from pipeline.isolate import run_in_child

ROOT = Path(__file__).resolve().parents[3]


def allocate(mb: int) -> tuple[dict, list[str]]:
    block = bytearray(mb * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    return {"pid": os.getpid(), "mb": mb}, ["somewhere"]


def refuse(_: object) -> None:
    raise InvalidInput("no such corpus: /nowhere")


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickling calls Unpicklable(msg): fails on the way back
        super().__init__(f"{a} and {b}")


def raise_unpicklable(_: object) -> None:
    raise Unpicklable(1, 2)


def die(_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_forever(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):  # exited, not yet reaped
            return True
        time.sleep(0.1)
    return False


def _wait_for(path: Path, within_s: float = 60) -> int:
    deadline = time.time() + within_s
    while not (path.exists() and path.read_text()):
        assert time.time() < deadline, "the child never started"
        time.sleep(0.1)
    return int(path.read_text())


def test_result_and_its_own_peak_memory_come_back() -> None:
    r = run_in_child(allocate, 300, "stage probe")
    assert r.outputs["mb"] == 300 and r.outputs["pid"] != os.getpid() and r.paths == ["somewhere"]
    assert r.peak_rss_mb is not None and r.peak_rss_mb >= 300


def test_a_domain_error_is_raised_here_with_its_type_and_the_childs_traceback() -> None:
    with pytest.raises(InvalidInput, match="no such corpus") as info:
        run_in_child(refuse, None, "stage probe")
    assert any("in the process of stage probe" in n and "refuse" in n for n in info.value.__notes__)


def test_an_exception_that_cannot_cross_keeps_its_type_name_and_message() -> None:
    with pytest.raises(RuntimeError, match="Unpicklable: 1 and 2"):
        run_in_child(raise_unpicklable, None, "stage probe")


def test_a_killed_stage_says_how_it_died() -> None:
    with pytest.raises(ProcessDied, match="stage probe: .*killed by SIGKILL: out of memory"):
        run_in_child(die, None, "stage probe")


def test_an_exception_in_the_build_stops_the_stage(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    def interrupt(*_: object) -> None:
        raise TimeoutError("stop")

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.alarm(1)
        with pytest.raises(TimeoutError):
            run_in_child(sleep_forever, str(pid_file), "stage probe")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert _gone(_wait_for(pid_file), within_s=5)


def test_a_stage_never_outlives_a_killed_build(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = ("import sys; from tests.unit.pipeline.test_isolate import sleep_forever; "
              "from pipeline.isolate import run_in_child; run_in_child(sleep_forever, sys.argv[1], 'stage probe')")
    build = subprocess.Popen([sys.executable, "-c", script, str(pid_file)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        child = _wait_for(pid_file)
        build.send_signal(signal.SIGKILL)  # no finally runs in the build: the stage must notice by itself
        build.wait()
        assert _gone(child, within_s=10)
    finally:
        if build.poll() is None:
            build.kill()

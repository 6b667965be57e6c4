"""The streamed ingest's plumbing: a lazy scan, bounded batches, overlapping stages with bounded queues, errors
that stop every stage, and per-stage progress lines."""

from __future__ import annotations

import io
import logging
import threading
import time
import types
from pathlib import Path

import pytest

from common.errors import NotFound
from indexer import stream
from indexer.progress import IngestProgress
from indexer.types import Document


def _doc(i: int, n_chars: int = 10) -> Document:
    return Document(doc_id=f"d{i}", text="x" * n_chars, sha256=f"h{i}")


def test_scan_is_lazy_one_file_at_a_time(tmp_path, monkeypatch):
    for i in range(50):
        (tmp_path / f"f{i:02d}.txt").write_text(f"Document number {i} talks about things.")
    opened: list[Path] = []
    real = stream.load_file

    def counting(path, doc_id, max_bytes):  # type: ignore[no-untyped-def]
        opened.append(path)
        return real(path, doc_id, max_bytes)

    monkeypatch.setattr(stream, "load_file", counting)
    skipped, roots = [], []
    docs = stream.iter_scan([tmp_path], 2**20, skipped, roots)
    assert isinstance(docs, types.GeneratorType) and opened == [] and roots == [tmp_path.resolve()]
    first = next(docs)
    assert first.doc_id == "f00.txt" and len(opened) == 1
    assert sum(1 for _ in docs) == 49 and len(opened) == 50


def test_scan_checks_every_path_before_the_first_document(tmp_path):
    (tmp_path / "a.txt").write_text("Some text here.")
    with pytest.raises(NotFound, match="missing"):
        stream.iter_scan([tmp_path, tmp_path / "missing"], 2**20, [], [])


def test_scan_skips_duplicate_ids_with_a_reason(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
        (root / "same.txt").write_text(f"Text in {root.name}.")
    skipped: list = []
    # Two roots give the same relative id: the second is refused, not silently replaced.
    assert [d.doc_id for d in stream.iter_scan([a, b], 2**20, skipped, [])] == ["same.txt"]
    assert len(skipped) == 1 and "duplicate document id" in skipped[0].reason


def test_batches_are_bounded_by_count_and_characters():
    docs = [_doc(i, 100) for i in range(25)]
    assert [len(b) for b in stream.batched(docs, max_docs=10, max_chars=10**9)] == [10, 10, 5]
    assert [len(b) for b in stream.batched(docs, max_docs=100, max_chars=350)] == [4] * 6 + [1]
    big = [_doc(0, 5000), _doc(1, 10)]  # one document over the budget travels alone
    assert [len(b) for b in stream.batched(big, max_docs=100, max_chars=1000)] == [1, 1]
    assert list(stream.batched([], 10, 10)) == []
    gen = stream.batched(iter(docs), 10, 10**9)
    assert isinstance(gen, types.GeneratorType)


def test_stages_overlap_and_the_source_never_runs_far_ahead():
    """Stage 2 works on batch 1 while the source is still producing; the source is held back by the
    bounded queues (at most depth items waiting in front of each stage, plus one in each stage's hands)."""
    produced: list[int] = []
    in_flight_max = 0
    done: list[int] = []
    lock = threading.Lock()
    first_done = threading.Event()

    def source():  # type: ignore[no-untyped-def]
        for i in range(40):
            produced.append(i)
            yield i

    def slow(x: int) -> int:
        time.sleep(0.01)
        return x

    def sink(x: int) -> None:
        nonlocal in_flight_max
        with lock:
            in_flight_max = max(in_flight_max, len(produced) - len(done))
            done.append(x)
        first_done.set()

    stream.run_stages(source(), [("a", slow), ("b", slow), ("c", sink)], depth=2)
    assert done == list(range(40))  # order kept, nothing lost
    # 3 queues of 2 plus one item held by each stage plus the one the source is putting.
    assert in_flight_max <= 3 * 2 + 3 + 1


def test_the_sink_starts_before_the_source_ends():
    started_while_producing = threading.Event()
    producing = threading.Event()
    producing.set()

    def source():  # type: ignore[no-untyped-def]
        for i in range(20):
            yield i
            time.sleep(0.01)
        producing.clear()

    def sink(x: int) -> None:
        if producing.is_set():
            started_while_producing.set()

    stream.run_stages(source(), [("a", lambda x: x), ("b", sink)])
    assert started_while_producing.is_set()


def test_a_failing_stage_stops_the_others_and_raises_here():
    seen: list[int] = []

    def boom(x: int) -> int:
        if x == 3:
            raise ValueError("stage failed on 3")
        return x

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:  # the source must be stopped by the failure, not run forever
            yield i
            i += 1

    with pytest.raises(ValueError, match="stage failed on 3"):
        stream.run_stages(endless(), [("a", boom), ("b", seen.append)])
    assert seen == [0, 1, 2]


def test_a_failing_source_stops_the_stages():
    def bad():  # type: ignore[no-untyped-def]
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        stream.run_stages(bad(), [("a", lambda x: x), ("b", lambda x: None)])


def test_progress_lines_carry_rates_and_an_eta(caplog):
    p = IngestProgress(stream.STAGES, enabled=True, stream=io.StringIO(), interval=0.0)
    p.expect("chunk", 100)
    with caplog.at_level(logging.INFO, logger="indexer.progress"):
        p.update("chunk", 10, 30)
        time.sleep(0.01)
        p.update("chunk", 10, 30)
    line = caplog.records[-1].getMessage()
    assert "chunk 20/100+ docs" in line and "doc/s" in line and "chunk/s" in line and "ETA" in line
    p.finish_totals()
    assert "chunk 20/100 docs" in p.meters["chunk"].line(time.monotonic())
    s = p.summary()
    assert s["chunk"]["docs"] == 20 and s["chunk"]["items"] == 60 and s["chunk"]["docs_per_s"] > 0
    p.close()
    p.close()  # idempotent


def test_progress_is_silent_when_disabled(caplog):
    p = IngestProgress(stream.STAGES, enabled=False, stream=io.StringIO(), interval=0.0)
    with caplog.at_level(logging.INFO, logger="indexer.progress"):
        p.update("embed", 5, 5)
        p.close()
    assert not caplog.records

"""Crash safety and concurrency, with the harness of benchmarks/reliability.py at CI counts.

`python -m benchmarks.reliability crash` and `... concurrency` run the same checks at larger counts.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import mostore
from benchmarks import reliability as rel

pytestmark = pytest.mark.slow


def test_sigkill_python_api_ingest_loses_nothing(tmp_path, tiny_codec_path):
    out = rel.crash_api(tmp_path / "api", str(tiny_codec_path), kills=20, seed=1)
    assert out["kills"] == 20
    assert out["failed_rounds"] == 0, out["problems"]
    assert out["items_lost"] == out["partial_batches"] == out["duplicate_ids"] == 0
    assert out["damaged_rows"] == out["index_disagreements"] == 0
    assert out["acked_items"] > 20  # the kills landed while work was being acknowledged
    # the harness aims at each stage in turn; most kills land inside the stage aimed at
    assert out["kills_by_stage"]["encode"] + out["kills_by_stage"]["commit"] >= 6


def test_sigkill_server_under_adds_and_searches(tmp_path, tiny_codec_path):
    out = rel.crash_http(tmp_path / "http", str(tiny_codec_path), kills=20, seed=2)
    assert out["kills"] == 20
    assert out["failed_rounds"] == 0, out["problems"]
    assert out["items_lost"] == out["partial_batches"] == out["duplicate_ids"] == 0
    assert out["server_errors"] == 0, out["responses"]
    assert out["acked_items"] > 20 and out["searches"] > 0
    assert out["kills_by_stage"]["search"] >= 1


def test_the_checker_sees_a_lost_item(tmp_path, tiny_codec_path):
    """The verification is not vacuous: remove one acknowledged row behind the store's back."""
    from mostore.codec.model import Codec

    rel.crash_api(tmp_path / "api", str(tiny_codec_path), kills=2, seed=3)
    journal = rel.Journal(tmp_path / "api" / "journal.jsonl")
    entry = max(journal.entries(), key=lambda e: len(e["ids"]))
    victim = entry["ids"][0]
    db = mostore.connect(tmp_path / "api" / "db", codec=Codec.load(str(tiny_codec_path)))
    db.open_table(rel.TABLE)._lt.delete(f"id = {victim}")
    verdict = rel.verify(tmp_path / "api" / "db", Codec.load(str(tiny_codec_path)), journal)
    assert verdict.lost == 1 and not verdict.ok
    assert verdict.partial_batches == (1 if len(entry["ids"]) > 1 else 0)


@pytest.mark.parametrize("http", [False, True], ids=["processes", "http"])
def test_concurrent_writers_deleters_searchers(tmp_path, tiny_codec_path, http):
    out = rel.concurrency(
        tmp_path / "c", str(tiny_codec_path), writers=3, deleters=1, searchers=2, seconds=5.0, http=http
    )
    assert out["ops"]["writer"]["ops"] > 3 and out["ops"]["searcher"]["ops"] > 3 and out["items_deleted"] > 0
    assert rel.concurrency_ok(out), out


def test_optimize_while_readers_search(tmp_path, tiny_codec, images):
    tbl = mostore.connect(tmp_path / "db", codec=tiny_codec).create_table("t")
    for i in range(0, 12, 2):  # six small fragments
        tbl.add(images[i : i + 2], metadata=[{"n": i}, {"n": i + 1}])
    reader = mostore.connect(tmp_path / "db", codec=tiny_codec).open_table("t")
    errors, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                assert len(reader.search(images[3]).limit(5).to_list()) == 5
                assert reader.count_rows() == 12
                reader.reconstruct(4)
            except Exception as exc:  # noqa: BLE001 - any error is the failure under test
                errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    result = tbl.optimize(keep_versions_for=timedelta(0))  # the harshest: drop every older version
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert result["fragments_after"] < result["fragments_before"]
    assert reader.check()["ok"] and reader.count_rows() == 12

"""Records round-trip, files are written atomically, unreadable files are reported."""

import json

import pytest

from segbench import results as res
from segbench.results import Record, ResultsError, ResultsFile


def record(key="a", status="ok", **kw):
    return Record(benchmark="b", key=key, model="m", runtime="eager", shape=[1, 3, 64, 64],
                  batch=1, threads=2, status=status, **kw)


def test_record_round_trip(tmp_path):
    r = record(timing={"throughput": 5.0}, fidelity={"max_abs": 0.1}, extra={"streams": 1})
    f = ResultsFile("b", {"cpu": "x"}, [r])
    path = tmp_path / "b" / "m.json"
    res.save(path, f)
    back = res.load(path)
    assert back.records[0] == r
    assert back.machine == {"cpu": "x"}


def test_unknown_status_is_refused():
    with pytest.raises(ValueError):
        record(status="great")


def test_upsert_replaces_the_same_cell_only():
    f = ResultsFile("b", {})
    f.upsert(record("a", extra={"streams": 1}))
    f.upsert(record("b"))
    f.upsert(record("a", extra={"streams": 2}))
    assert [r.key for r in f.records] == ["b", "a"]
    assert f.records[1].extra == {"streams": 2}


def test_interrupted_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    res.write_json_atomic(path, {"version": 1})

    def exploding_dump(obj, handle, **kw):
        handle.write('{"version": 2, "records": [')  # a partial write, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(res.json, "dump", exploding_dump)
    with pytest.raises(KeyboardInterrupt):
        res.write_json_atomic(path, {"version": 2})
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_unreadable_file_is_reported_not_overwritten(tmp_path):
    path = tmp_path / "bench" / "m.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(ResultsError, match="unreadable results file"):
        res.load_or_new(path, "bench", {})
    assert path.read_text() == "{not json"


def test_quick_runs_never_share_the_full_file(tmp_path):
    full = res.results_path(tmp_path, "enc", "cpu-2c", quick=False)
    quick = res.results_path(tmp_path, "enc", "cpu-2c", quick=True)
    assert full.name == "cpu-2c.json" and quick.name == "cpu-2c.quick.json"


def test_full_files_come_this_machine_first_then_newest_and_unreadable_ones_are_left_out(
        tmp_path):
    from segbench.results import full_results_this_machine_first

    def file(name, date):
        rec = Record(benchmark="b", key=name, model="m", runtime="eager", shape=[1], batch=1,
                     threads=1, date=date)
        res.save(tmp_path / "b" / f"{name}.json", ResultsFile("b", {"cpu": name}, [rec]))

    file("old", "2026-01-01")
    file("new", "2026-06-01")
    file("here", "2025-01-01")
    file("smoke.quick", "2026-12-01")
    (tmp_path / "b" / "broken.json").write_text("{")
    found = full_results_this_machine_first(tmp_path, "b", "here")
    assert [f.path.stem for f in found] == ["here", "new", "old"]
    assert full_results_this_machine_first(tmp_path, "missing", "here") == []

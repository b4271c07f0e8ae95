"""Record.extra keys are declared (segbench.fields): a misspelt key fails here or where it is
written, never renders a dash. Results files of schema 1 and 2 are both read."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from segbench import fields
from segbench import results as res
from segbench.results import Record, ResultsError, ResultsFile

ROOT = Path(__file__).resolve().parents[1]


def record(**extra):
    return Record(benchmark="b", key="a", model="m", runtime="eager", shape=[1, 3, 8, 8],
                  batch=1, threads=1, extra=extra)


def committed_files():
    return sorted((ROOT / "results").glob("*/*.json"))


def test_every_key_of_every_committed_results_file_is_declared_with_its_type():
    assert committed_files()
    for path in committed_files():
        # as the reader sees it: a schema-1 file's keys moved by results.upgrade (own_model's
        # first run spread its model folder's facts; upgrade nests them), nothing dropped
        data = res.upgrade(json.loads(path.read_text()))
        for r in data["records"]:
            assert not fields.problems(r.get("extra") or {}), (path.name, r["key"])


def test_every_committed_results_file_loads_in_the_current_schema():
    for path in committed_files():
        records = res.load(path).records
        assert records, path
        for r in records:
            assert not fields.problems(r.extra), (path.name, r.key)


def test_a_schema_1_record_keeps_its_values_where_schema_2_keeps_them(tmp_path):
    """``parts`` meant three things in schema 1: submodules timed alone (now ``submodules``), a
    peer's logged stages (now ``extra["tool_stages"]``), the champion row's flag for the first
    (now ``breakdown``)."""
    alone = {"encoder": {"throughput": 9.0}}
    logged = {"predict": {"seconds": 61.0, "runs_s": [60.0, 62.0]}}
    own = {**record(row={"stage": "baseline", "parts": True}).to_dict(), "parts": alone}
    peer = {**record(peer="TotalSegmentator").to_dict(), "family": "peer", "parts": logged}
    for r in (own, peer):
        del r["submodules"]
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema": 1, "benchmark": "b", "machine": {},
                                "records": [own, peer]}))
    a, b = res.load(path).records
    assert a.submodules == alone and a.extra["row"] == {"stage": "baseline", "breakdown": True}
    assert b.submodules == {} and b.extra["tool_stages"] == logged


def test_the_committed_peer_rows_keep_their_stages():
    # the tool's own rows (run_peer: its log parsed per run); own_model's command rows
    # (nnU-Net's CLI, the tool once per CT of a cohort) log no stages
    peers = [r for path in committed_files() for r in res.load(path).records
             if r.family == "peer" and r.ok and "runs" in r.extra]
    assert peers and all("predict" in r.extra["tool_stages"] and not r.submodules
                         for r in peers)


def test_saving_an_undeclared_key_raises_and_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "b" / "m.json"
    res.save(path, ResultsFile("b", {}, [record(dice=0.9)]))
    before = path.read_text()
    with pytest.raises(ValueError, match="undeclared extra key 'dcie'"):
        res.save(path, ResultsFile("b", {}, [record(dcie=0.9)]))
    assert path.read_text() == before


def test_saving_a_value_of_another_type_raises(tmp_path):
    with pytest.raises(ValueError, match="'display' holds float"):
        res.save(tmp_path / "m.json", ResultsFile("b", {}, [record(display=1.5)]))


def test_numbers_are_checked_as_the_json_they_become(tmp_path):
    path = tmp_path / "m.json"
    res.save(path, ResultsFile("b", {}, [record(passes=np.int64(8), dice=np.float32(0.5),
                                                agreement_vs_eager=100,
                                                loop_peak_rss_bytes=None)]))
    assert res.load(path).records[0].extra["passes"] == 8


def test_update_refuses_a_record_with_an_undeclared_key(tmp_path):
    path = tmp_path / "b" / "m.json"
    with pytest.raises(ValueError, match="undeclared"):
        res.update(path, ResultsFile("b", {}), [record(dispaly="x")])
    assert not path.exists()


def test_a_cell_with_an_undeclared_label_is_refused_before_any_work():
    from segbench.cell import Cell
    from segbench.models import ModelSpec

    with pytest.raises(ValueError, match="'methd'"):
        Cell(benchmark="b", model=ModelSpec("testing", "tiny", 2), runtime="eager",
             shape=(1, 3, 8, 8), threads=1, extra={"methd": "x"})


@pytest.mark.parametrize("schema", [1, 2])
def test_schema_1_and_2_files_are_read(tmp_path, schema):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema": schema, "benchmark": "b", "machine": {},
                                "records": [record(dice=0.9).to_dict()]}))
    back = res.load(path, "b")
    assert back.records[0].extra == {"dice": 0.9}
    res.save(path, back)  # written back in the current schema
    assert json.loads(path.read_text())["schema"] == res.SCHEMA == 2


def test_an_unknown_schema_is_refused(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema": 3, "benchmark": "b", "machine": {}, "records": []}))
    with pytest.raises(ResultsError, match="schema 3, this code reads 1, 2"):
        res.load(path)


def test_a_key_is_declared_once_with_json_types():
    with pytest.raises(ValueError, match="declared twice"):
        fields.declare("dice", float, "again")
    with pytest.raises(ValueError, match="types"):
        fields.declare("new_key_with_a_set", set, "not JSON")
    assert all(f.meaning and f.name == name for name, f in fields.DECLARED.items())


# literal keys handed to a record's or cell's extra; ``opts.extra`` is the command line's own
# options (segbench.cli.Options), not a record's
LITERAL = [
    re.compile(r"(?<!opts)\.extra(?:\.get|\.setdefault|\.pop)\(\s*[\"']([A-Za-z0-9_]+)[\"']"),
    re.compile(r"(?<!opts)\.extra\[\s*[\"']([A-Za-z0-9_]+)[\"']\s*\]"),
    re.compile(r"[\"']([A-Za-z0-9_]+)[\"']\s+(?:not\s+)?in\s+[\w.\[\]\"']*(?<!opts)\.extra\b"),
]
DICT_LITERAL = re.compile(r"\bextra\s*=\s*\{([^{}]*)\}")
DICT_KEY = re.compile(r"[\"']([A-Za-z0-9_]+)[\"']\s*:")


def literal_keys(text):
    found = {m.group(1) for pattern in LITERAL for m in pattern.finditer(text)}
    for m in DICT_LITERAL.finditer(text):
        found |= set(DICT_KEY.findall(m.group(1)))
    return found


def test_the_key_finder_sees_the_usual_spellings():
    text = ('r.extra.get("dice") r.extra["display"] "method" in r.extra '
            'extra={"tag": t, "stage": s} opts.extra.get("peers") opts.extra["loops"]')
    assert literal_keys(text) == {"dice", "display", "method", "tag", "stage"}


def test_every_literal_extra_key_in_the_code_is_declared():
    sources = sorted((ROOT / "src" / "segbench").rglob("*.py")) + sorted(
        (ROOT / "benchmarks").rglob("*.py"))
    wrong = {f"{path.relative_to(ROOT)}: {key}" for path in sources
             for key in literal_keys(path.read_text()) if key not in fields.DECLARED}
    assert not wrong, sorted(wrong)

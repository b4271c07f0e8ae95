"""The README a person reads: its first screen answers, it stays small, every page in docs/ is
linked from it, and every benchmark with a full run gets a generated results page that
``report.py --check`` covers like the README."""

import importlib.util
import re

import pytest
from conftest import ROOT
from test_report import MACHINE, rec

from segbench import readme, summary
from segbench.results import ResultsFile, save

README = ROOT / "README.md"


@pytest.fixture
def report_main():
    spec = importlib.util.spec_from_file_location("report_cmd", ROOT / "benchmarks/report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_readme_is_small_answers_first_and_has_no_long_prose_lines():
    text = README.read_text()
    assert len(text.encode()) <= 20_000
    first = text.splitlines()[:40]
    # the first screen holds an answer table: this machine's (this_cpu) or the long runs'
    starts = [ln for ln in first if ln in ("<!-- results:this_cpu -->", "<!-- results:answer -->")]
    assert starts and any(ln.startswith("| ") for ln in first[first.index(starts[0]):])
    mine = re.search(r"<!-- results:this_cpu -->\n(.*?)<!-- /results:this_cpu -->", text, re.S)
    if mine:  # the original, the champion and the 3D network, with a real-CT quality column
        rows = [ln for ln in mine.group(1).splitlines() if ln.startswith("| ")]
        assert "real CT" in rows[0] and len(rows) >= 2 + 3
    inside = re.search(r"<!-- results:answer -->\n(.*?)<!-- /results:answer -->", text, re.S)
    table = [ln for ln in inside.group(1).splitlines() if ln.startswith("| ")]
    assert 1 + 4 <= len(table) <= 1 + 1 + 6 + 3  # header, rule, 4-6 pipelines, the real tool
    assert not [ln for ln in text.splitlines() if len(ln) > 200 and not ln.startswith("|")]


def test_every_page_in_docs_is_linked_from_the_readme_and_every_link_resolves():
    text = README.read_text()
    links = set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text))
    local = {link for link in links if not re.match(r"[a-z]+://", link)}
    assert not [link for link in local if not (ROOT / link).exists()]
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - local == set(), "pages in docs/ that the README does not link"


def test_results_pages_are_made_rewritten_and_checked(tmp_path, report_main, capsys):
    results = tmp_path / "results"
    for name, family in (("encoder_only", "encoder"), ("fpn_decoder", "fpn")):
        save(results / name / "fake-2c.json", ResultsFile(name, MACHINE, [  # each gets a page
            rec("resnet18", family=family, tp=33.3, elapsed_s=90.0)]))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("# Some notes\n")
    text = ("intro\n<!-- results:pages -->\n<!-- /results:pages -->\n"
            "<!-- results:docs -->\n<!-- /results:docs -->\n")
    (tmp_path / "README.md").write_text(text)
    args = ["--readme", str(tmp_path / "README.md"), "--results", str(results)]
    assert report_main(args + ["--check"]) == 1
    assert "docs/results/encoder_only.md is missing" in capsys.readouterr().err
    assert report_main(args) == 0
    page = tmp_path / "docs" / "results" / "encoder_only.md"
    assert "33.3 ± 0.2" in page.read_text() and (page.parent / "fpn_decoder.md").exists()
    written = (tmp_path / "README.md").read_text()
    assert "[encoder_only](docs/results/encoder_only.md)" in written
    assert "| 1 " in written and "2 on 2 cores" in written  # one cell of 90 s, in minutes
    assert "- [Some notes](docs/notes.md)" in written
    assert report_main(args + ["--check"]) == 0
    # prose written on the page outside the markers stays; a hand-edited number is caught
    page.write_text(page.read_text().replace("# Encoders", "# Encoders, described by hand"))
    assert report_main(args) == 0 and "described by hand" in page.read_text()
    page.write_text(page.read_text().replace("33.3 ± 0.2", "43.3 ± 0.2"))
    assert report_main(args + ["--check"]) == 1
    assert "encoder_only.md is stale" in capsys.readouterr().err


def test_a_new_benchmark_page_starts_from_its_title_and_command():
    class Bench:
        name, title = "new_one", "Something new"

    text = readme.page_skeleton(Bench())
    assert text.startswith("# Something new\n")
    assert "uv run benchmarks/new_one/benchmark.py" in text
    assert readme.section_names(text) == ["new_one"]


def loop(method, runtime, seconds, **extra):
    r = rec(method, runtime=runtime, tp=1.0, key=f"{method}|{runtime}")
    r.timing["latency_p50_ms"] = seconds * 1000
    r.extra = {"method": method, "title": method.upper(), **extra}
    return r


def test_the_answer_shows_each_pipeline_at_its_fastest_faithful_runtime_and_the_real_tool():
    records = [loop("2d-original", "ort-fp32", 24.0, dice=0.73),
               loop("2d-original", "openvino-int8", 12.0, dice=0.73),  # not the recipe's
               loop("totalseg-fast", "eager", 60.0, dice=0.06),
               loop("totalseg-fast", "openvino-int8", 20.0, dice=0.06, dice_vs_eager=0.47),
               loop("totalseg-fast", "openvino-bf16", 22.0, dice=0.06, dice_vs_eager=0.99),
               loop("stunet-s", "openvino-bf16", 150.0, agreement_vs_eager=97.4)]
    peer = rec("totalsegmentator", runtime="as-shipped", family="peer", key="peer:x",
               extra={"display": "TotalSegmentator 9.9 --fast --ml, as shipped (eager)"})
    peer.timing = {"median_s": 84.0}
    rows = summary.answer_rows([*records, peer])
    assert [r[:4] for r in rows] == [
        ["2D-ORIGINAL", "`ort-fp32`", "24", "1.00x"],
        ["TOTALSEG-FAST", "`openvino-bf16`", "22", "0.92x"],  # INT8 lost its own labels
        ["STUNET-S", "`openvino-bf16`", "150", "6.25x"],
        ["the real TotalSegmentator 9.9 --fast --ml", "shipped, eager", "84", "3.50x"]]
    assert rows[1][4] == "Dice 0.060 (barely trained); 0.990 vs its FP32"
    assert rows[2][4] == "97.40 % agree with its FP32 (random weights)"
    assert rows[3][4].startswith("speed only")

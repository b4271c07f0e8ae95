"""report.py --csv: one flat CSV per results file that the csv module reads back with as many
rows as the JSON has records, every number in a column of its own."""

import csv
import json
import subprocess
import sys

from conftest import ROOT

from segbench import flat
from segbench.results import Record, ResultsFile, save


def record(key, **kw):
    return Record(benchmark="bench", key=key, model="m", runtime="eager", shape=[1, 3, 64, 64],
                  batch=1, threads=2, **kw)


def results_dir(tmp_path):
    records = [
        record("a", timing={"throughput": 5.0, "latency_p50_ms": 200.0,
                            "repeat_throughputs": [4.9, 5.0, 5.1]},
               memory={"peak_rss_mb": 300.5}, extra={"streams": 2, "display": "M, small"},
               submodules={"encoder": {"throughput": 9.0}}, runtime_info={"opset": 18,
                                                                     "layers": {"conv": 3}}),
        record("b", status="failed", reason='prepare: "quoted", with comma',
               fidelity={"sqnr_db": 31.5}),
        record("c", quick=True),
    ]
    root = tmp_path / "results"
    save(root / "bench" / "some-cpu-2c.json", ResultsFile("bench", {"slug": "some-cpu-2c"},
                                                          records))
    save(root / "bench" / "some-cpu-2c.quick.json", ResultsFile("bench", {}, records[:1]))
    return root


def test_csv_reads_back_one_row_per_record(tmp_path):
    root = results_dir(tmp_path)
    written = flat.export_all(root, tmp_path / "csv")
    assert [p.relative_to(tmp_path / "csv").as_posix() for p in written] == [
        "bench/some-cpu-2c.csv"]  # quick files are left out
    with open(written[0], newline="") as handle:
        rows = list(csv.DictReader(handle))
    source = json.loads((root / "bench" / "some-cpu-2c.json").read_text())
    assert len(rows) == len(source["records"]) == 3
    a, b, _ = rows
    assert float(a["timing.throughput"]) == 5.0 and float(a["timing.latency_p50_ms"]) == 200.0
    assert float(a["memory.peak_rss_mb"]) == 300.5 and int(a["extra.streams"]) == 2
    assert float(a["submodules.encoder.throughput"]) == 9.0 and int(a["runtime_info.opset"]) == 18
    assert "runtime_info.layers.conv" not in a  # nested inventories stay in the JSON
    assert json.loads(a["timing.repeat_throughputs"]) == [4.9, 5.0, 5.1]
    assert a["extra.display"] == "M, small" and a["machine"] == "some-cpu-2c"
    assert b["reason"] == 'prepare: "quoted", with comma' and b["timing.throughput"] == ""
    assert float(b["fidelity.sqnr_db"]) == 31.5


def test_report_script_writes_csv(tmp_path):
    root = results_dir(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"),
                           "--results", str(root), "--csv", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "out" / "bench" / "some-cpu-2c.csv", newline="") as handle:
        assert len(list(csv.reader(handle))) == 1 + 3  # header + records

"""Machine identity from /proc/cpuinfo, one machine per results file, contention detection."""

import subprocess
import sys
import time

import pytest

from segbench import bench, machine, tables
from segbench.measure import Protocol, measure
from segbench.results import Record, ResultsError, ResultsFile, load_or_new, save


def cpuinfo(vendor, family, model, stepping=1, name="AMD EPYC", cores=2, flags="avx2"):
    blocks = []
    for i in range(cores):
        blocks.append(f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
                      f"model\t\t: {model}\nmodel name\t: {name}\nstepping\t: {stepping}\n"
                      f"physical id\t: 0\ncore id\t\t: {i}\nflags\t\t: {flags}\n")
    return "\n".join(blocks)


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    def use(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(machine, "CPUINFO", path)
    return use


ZEN4 = cpuinfo("AuthenticAMD", 25, 17)
ZEN5 = cpuinfo("AuthenticAMD", 26, 2)
SAPPHIRE = cpuinfo("GenuineIntel", 6, 143, 8, "Intel(R) Xeon(R) Platinum 8480+", 4)


def test_zen4_zen5_and_intel_get_three_slugs(fake_cpu):
    slugs = {}
    for label, text in (("zen4", ZEN4), ("zen5", ZEN5), ("spr", SAPPHIRE)):
        fake_cpu(text)
        slugs[label] = machine.slug()
    assert slugs == {"zen4": "amd-epyc-zen4-2c", "zen5": "amd-epyc-zen5-2c",
                     "spr": "intel-xeon-platinum-8480-sapphire-rapids-4c"}


def test_capture_names_family_model_stepping_and_microarchitecture(fake_cpu):
    fake_cpu(ZEN4)
    block = machine.capture()
    assert (block["vendor"], block["family"], block["model"], block["stepping"]) == \
        ("AuthenticAMD", 25, 17, 1)
    assert block["microarchitecture"] == "Zen 4"
    assert "Zen 4 (family 25 model 17 stepping 1), 2 cores" in machine.describe(block)


@pytest.mark.parametrize("vendor, family, model, stepping, expected", [
    ("AuthenticAMD", 23, 0x31, 0, "Zen 2"),
    ("AuthenticAMD", 25, 0x01, 1, "Zen 3"),
    ("GenuineIntel", 6, 0x55, 4, "Skylake-SP"),
    ("GenuineIntel", 6, 0x55, 7, "Cascade Lake"),
    ("GenuineIntel", 6, 0x6A, 6, "Ice Lake-SP"),
    ("GenuineIntel", 6, 0xCF, 2, "Emerald Rapids"),
    ("GenuineIntel", 6, 0xAD, 1, "Granite Rapids"),
    ("AuthenticAMD", 27, 0, 0, "unknown (family 27 model 0)"),  # never a guess
    ("GenuineIntel", 19, 1, 0, "unknown (family 19 model 1)"),
])
def test_microarchitecture_table(vendor, family, model, stepping, expected):
    assert machine.microarchitecture(vendor, family, model, stepping) == expected


def test_arm_parts_from_implementer_and_part(fake_cpu):
    fake_cpu("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd0c\nCPU revision\t: 1\n")
    assert machine.cpu_identity()["microarchitecture"] == "Neoverse N1"
    fake_cpu("processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xfff\n")
    assert machine.cpu_identity()["microarchitecture"] == "unknown (Arm part 0xfff)"


def block_of(text, fake_cpu, memory=23.5):
    fake_cpu(text)
    block = machine.capture()
    block["memory_gib"] = memory
    return block


def test_results_file_of_another_machine_is_refused(tmp_path, fake_cpu):
    path = tmp_path / "fpn_decoder" / "x.json"
    save(path, ResultsFile("fpn_decoder", block_of(ZEN4, fake_cpu)))
    with pytest.raises(ResultsError, match="written on another machine .*use --out DIR"):
        load_or_new(path, "fpn_decoder", block_of(ZEN5, fake_cpu))
    same = load_or_new(path, "fpn_decoder", block_of(ZEN4, fake_cpu, memory=23.9))
    assert same.records == []  # the same CPU with slightly other memory reporting is accepted
    with pytest.raises(ResultsError, match="holds 'fpn_decoder' results, not 'combined'"):
        load_or_new(path, "combined", block_of(ZEN4, fake_cpu))


def test_writing_into_another_machines_file_exits_2_with_one_line(encoder_bench, capsys,
                                                                   tmp_path, fake_cpu):
    other = block_of(ZEN4 if machine.capture()["family"] != 25 else ZEN5, fake_cpu)
    fake_cpu(open("/proc/cpuinfo").read())  # back to this machine
    path = tmp_path / "encoder_only" / f"{machine.slug()}.json"
    save(path, ResultsFile("encoder_only", other))
    before = path.read_text()
    code = bench.main(encoder_bench, ["--out", str(tmp_path), "--models", "resnet18"])
    err = capsys.readouterr().err
    assert code == 2 and "written on another machine" in err and err.count("\n") == 1
    assert path.read_text() == before


def test_provenance_lists_every_torch_version_in_a_file():
    def rec(torch):
        return Record(benchmark="b", key=torch, model="m", runtime="eager", shape=[1],
                      batch=1, threads=2, packages={"torch": torch})
    text = tables.provenance(ResultsFile("b", {"cpu": "X", "packages": {"torch": "2.15.0"}},
                                         [rec("2.15.0"), rec("2.16.0")]))
    assert "torch 2.15.0, 2.16.0" in text


def test_a_busy_background_process_makes_a_timing_contended():
    quiet = measure(lambda: time.sleep(0.02), Protocol(warmup_calls=1, warmup_seconds=0,
                                                       repeats=2, repeat_seconds=0.3))
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\n"
                             "while time.time() - t < 20: pass"])
    try:
        time.sleep(0.3)  # the spinner is up
        loaded = measure(lambda: time.sleep(0.02), Protocol(warmup_calls=1, warmup_seconds=0,
                                                            repeats=2, repeat_seconds=0.5))
    finally:
        busy.kill()
        busy.wait()
    assert loaded.contended and loaded.contention["other_cores"] > 0.5
    assert loaded.to_dict()["contended"] is True
    assert quiet.contention is not None and "other_cores" in quiet.contention


def test_a_contended_cell_is_retimed_then_kept_flagged(monkeypatch, capsys):
    from segbench import cli

    def record(contended):
        return Record(benchmark="b", key="k", model="m", runtime="eager", shape=[1], batch=1,
                      threads=1, timing={"throughput": 1.0, "contended": contended,
                                         "contention": {"other_cores": 0.9,
                                                        "steal_cores": 0.0}})
    attempts = iter([record(True), record(True), record(False)])
    monkeypatch.setattr(bench, "run_isolated", lambda cell, timeout: next(attempts))
    opts = cli.Options(models=[], runtimes=[], size=64, batch=1, threads=1, classes=2,
                       repeats=1, quick=False, out=".", timeout=1, list=False,
                       retry_contended=2)
    out = bench.run_with_retries(None, opts, pause=0)
    assert not out.timing["contended"] and len(out.extra["contended_attempts"]) == 2
    attempts = iter([record(True), record(True)])
    opts.retry_contended = 1
    out = bench.run_with_retries(None, opts, pause=0)
    assert out.timing["contended"] and len(out.extra["contended_attempts"]) == 1
    assert "ok (contended)" in tables.status_text(out)

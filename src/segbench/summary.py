"""Recommendations written from the results, not by hand.

The README's "what to use" section is rendered here from the same results files as the
tables, so its numbers cannot drift from the runs that made them and ``report --check`` covers
them too. Each answer names its evidence (benchmark, runtime, spread or fidelity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from segbench import fields
from segbench.analysis import dice_drops, dice_verdicts, is_weights_check, own_dice_drop
from segbench.fidelity import AGREEMENT_THRESHOLD, DICE_TOLERANCE, TRAINED_DICE_FLOOR
from segbench.machine import describe
from segbench.results import Record, ResultsFile, full_results_files, load
from segbench.runtimes import REFERENCE
from segbench.tables import DASH, num
from segbench.tables import wrap_prose as _wrap

BENCHMARKS = ("champion", "whole_ct", "fpn_decoder", "unet_decoder", "quantization", "fidelity",
              "scaling")


def _precision(r: Record) -> str | None:
    """The precision the runtime declared (recorded with every row)."""
    return r.extra.get(fields.PRECISION)


def _ok(records: Sequence[Record]) -> list[Record]:
    """Measured rows, without random-weight twins timed only for the weights check."""
    return [r for r in records if r.ok and r.throughput and not is_weights_check(r)]


def _best(records: Sequence[Record]) -> Record | None:
    return max(_ok(records), key=lambda r: r.throughput, default=None)


def _name(r: Record) -> str:
    return fields.display(r)


def _agreement(r: Record) -> str:
    fid = r.fidelity or {}
    dice = r.extra.get(fields.DICE)
    if dice is not None:
        drop = own_dice_drop(r)
        versus = "" if drop is None or r.runtime == REFERENCE else f", {drop:+.3f} vs FP32 eager"
        return f"Dice {dice:.3f} on held-out phantoms with trained weights{versus}"
    if r.runtime == REFERENCE:
        return "the FP32 reference"
    if fid.get("label_agreement") is None:
        return "no fidelity recorded"
    return f"{fid['label_agreement']:.1f} % label agreement with FP32 on random weights"


def fastest_slice(files: dict[str, ResultsFile]) -> list[str]:
    """The fastest 2D network per 512x512 slice, over every 2D benchmark and runtime."""
    records = [r for name in ("fpn_decoder", "unet_decoder", "quantization")
               if name in files for r in files[name].records
               if r.family in ("fpn", "unet") and r.shape[-1] == 512]
    best = _best(records)
    if best is None:
        return []
    return [f"**Fastest per slice**: {_name(best)} under `{best.runtime}`, "
            f"{best.throughput:.1f} img/s (p50 {best.timing['latency_p50_ms']:.1f} ms per "
            f"512x512 slice, {_agreement(best)}; `{best.benchmark}` benchmark)."]


def runtime_rows(quant: ResultsFile, trained: dict[tuple[str, str], float]) -> list[list[str]]:
    """Per encoder: the fastest runtime, and whether INT8 beats the best FP32 runtime (with
    what it costs in Dice on trained weights, or in label agreement on random weights)."""
    rows = []
    models = dict.fromkeys(r.model for r in quant.records)
    for model in models:
        rows_of = [r for r in quant.records if r.model == model]
        best = _best(rows_of)
        fp32 = _best([r for r in rows_of if _precision(r) == "fp32"])
        int8 = _best([r for r in rows_of if _precision(r) == "int8"])
        if best is None:
            continue
        eager = next((r for r in _ok(rows_of) if r.runtime == REFERENCE), None)
        speedup = (f"{best.throughput / eager.throughput:.2f}x"
                   if eager and best is not eager else DASH)
        verdict, cost = DASH, DASH
        if fp32 and int8:
            ratio = int8.throughput / fp32.throughput
            verdict = (f"{'pays' if ratio > 1 else 'does not pay'}: `{int8.runtime}` is "
                       f"{ratio:.2f}x `{fp32.runtime}`")
            costs = []
            agree = (int8.fidelity or {}).get("label_agreement")
            if agree is not None and int8.weights == "random":
                flag = " (below the 99 % mark)" if agree < AGREEMENT_THRESHOLD else ""
                costs.append(f"{agree:.1f} % label agreement on random weights{flag}")
            drop = trained.get((model, int8.runtime))
            if drop is not None:
                costs.append(f"Dice {drop:+.3f} on trained weights")
            cost = "; ".join(costs) or DASH
        rows.append([_name(best), f"`{best.runtime}`", f"{best.throughput:.1f}", speedup,
                     verdict, cost])
    return rows


RUNTIME_HEADERS = ["network", "fastest runtime", "img/s", "vs eager",
                   "best INT8 vs best FP32", "what the best INT8 costs"]


ANSWER_BENCHMARKS = ("whole_ct", "champion")  # what the README's first table reads
# The pipelines the answer table shows, in this order (whole_ct method keys): the original 2D
# recipe, the champion's pipeline, and the 3D references; each under its fastest runtime whose
# labels stay close to its own FP32 eager loop, the original under its own recipe's runtime.
ANSWER_METHODS = ("2d-original", "2d-best", "totalseg-fast", "totalseg-default", "stunet-s")
ORIGINAL = ("2d-original", "ort-fp32")  # the original recipe: MobileNetV4 + FPN, ONNX Runtime


def answer_rows(records: Sequence[Record]) -> list[list[str]]:
    """Seconds per whole CT of the pipelines that matter, then the real TotalSegmentator
    commands timed in the same run (random weights planted: speed only)."""
    from segbench.benchmarks.whole_ct.view import keeps_output, quality_text, seconds_per_ct

    def secs(x: float) -> str:
        return f"{x:.2f}" if x < 10 else f"{x:.0f}"

    full = [r for r in records if not r.quick]
    base = next((r for r in full if (r.extra.get(fields.METHOD), r.runtime) == ORIGINAL), None)
    base_s = seconds_per_ct(base) if base else None
    rows = []
    for key in ANSWER_METHODS:
        timed = [(seconds_per_ct(r), r) for r in full if r.extra.get(fields.METHOD) == key
                 and seconds_per_ct(r) and keeps_output(r)]
        if key == ORIGINAL[0]:
            timed = [(base_s, base)] if base_s else []
        if not timed:
            continue
        sec, r = min(timed, key=lambda item: item[0])
        rows.append([fields.title(r), f"`{r.runtime}`", secs(sec),
                     f"{sec / base_s:.2f}x" if base_s else DASH, quality_text(r, short=True)])
    peers = [r for r in full if r.family == "peer" and r.ok and r.timing
             and r.timing.get("median_s")]
    for r in sorted(peers, key=lambda r: r.timing["median_s"]):
        sec = r.timing["median_s"]
        name = fields.display(r).split(", as shipped")[0]
        rows.append([f"the real {name}", "shipped, eager", secs(sec),
                     f"{sec / base_s:.2f}x" if base_s else DASH,
                     "speed only (random weights)"])
    return rows


ANSWER_HEADERS = ["pipeline", "runtime", "s / CT", "vs original", "quality (phantom CT)"]


def answer(results_dir: Path, slug: str | None = None) -> str:
    """The README's first table: seconds per whole CT and quality of the pipelines that
    matter beside the real TotalSegmentator (``whole_ct``), and the champion's slice rate
    (``champion``), from one machine's results."""
    files = machine_files(results_dir, slug, ANSWER_BENCHMARKS)
    searched = both_champions(results_dir, slug)
    if "whole_ct" not in files and not searched:
        return "_No whole_ct run committed yet: run it, then `uv run benchmarks/report.py`._"
    if searched:
        out = searched
    else:
        whole = files["whole_ct"]
        ct = next((r.extra for r in whole.records if r.extra.get(fields.CT_SOURCE)), {})
        shape = "x".join(map(str, ct.get(fields.CT_SHAPE, [])[::-1]))
        what = f"a {shape} phantom CT" if shape else "a phantom CT"
        out = [_wrap(f"Seconds per whole CT, HU volume in, label volume out ({what}, "
                     f"`whole_ct`), measured on {describe(whole.machine)}:"), "",
               _table(answer_rows(whole.records), ANSWER_HEADERS), ""]
    info = None
    if "champion" in files:
        from segbench.champion import baseline, recipe, reference_of_baseline

        records = files["champion"].records
        info, base = recipe(records), baseline(records)
    if info is not None and base is not None:
        ratio = "?" if info["ratio"] is None else f"{info['ratio']:.2f}x"
        ref = reference_of_baseline(records)
        out.append(_wrap(
            f"Per 512x512 slice (`champion`, "
            f"{files['champion'].machine.get('microarchitecture') or 'its machine'}): "
            f"{info['network']} + FPN {info['width']} under "
            f"`{info['runtime']}` gives {info['slices_per_s']:.1f} slices/s, {ratio} the "
            f"original recipe's {base.throughput:.1f} in the same run, Dice "
            f"{num(info['dice'], 3)} against the original's {num(ref, 3)}."))
        out.append("")
    out.append(_wrap(
        ("" if searched else "Dice is against the phantom's truth; a barely trained network "
         f"(Dice under {TRAINED_DICE_FLOOR}) compares runtimes, not methods. ")
        + "Every number is one run on one machine: rerun on your CPU."))
    return "\n".join(out)


def both_champions(results_dir: Path, slug: str | None) -> list[str]:
    """The per-CT answer with both sides searched (``champion_3d``: the 2D champion, the 3D
    champion and the real TotalSegmentator --fast --ml in one run), from this machine's file
    or else the newest; [] without one."""
    from segbench.benchmarks.champion_3d import view as c3d
    from segbench.results import full_results_this_machine_first

    files = full_results_this_machine_first(results_dir, "champion_3d", slug)
    rows = c3d.answer_rows(files[0].records) if files else []
    if not rows:
        return []
    line = c3d.headline(files[0].records, short=True)
    return [_wrap("Seconds per whole CT (HU in, labels out), both sides searched, the real tool "
                  "beside them, one run (512x512x280 phantom CT, `champion_3d`, "
                  f"{describe(files[0].machine)}):"), "",
            _table(rows, c3d.ANSWER_HEADERS), "", _wrap(line), "",
            _wrap(f"2D recipe: the champion run in {c3d.two_d_source(files[0].records)} (real-CT "
                  "quality below). 3D quality: Dice against the FP32 eager labels of the tool's "
                  "settings, random weights ([why](docs/champion_3d.md)). TotalSegmentator's "
                  "default and STU-Net per CT: [whole_ct](docs/results/whole_ct.md)."), ""]


def real_ct_lines(results_dir: Path, slug: str | None) -> list[str]:
    """The short real-CT tables (``realct.view.summary_tables``) of the first real_ct file:
    this machine's, else another's, named."""
    from segbench.realct.view import summary_tables
    from segbench.results import full_results_this_machine_first

    files = full_results_this_machine_first(results_dir, "real_ct", slug)
    if not files:
        return []
    out = [f"\n**Quality on real CT** (`real_ct`, {describe(files[0].machine)}):\n"]
    for caption, table in summary_tables(files[0].records):
        out += [_wrap(caption + ":"), "", table, ""]
    return out[:-1]


def champion_lines(files: dict[str, ResultsFile]) -> list[str]:
    """The champion slice -> label map pipeline with its exact recipe and how to reproduce it."""
    results = files.get("champion")
    if results is None:
        return []
    from segbench.champion import headline, real_verdict, recipe

    info = recipe(results.records)
    text = headline(results.records, real_verdict(results))
    if info is None:
        return [_wrap(f"- {text}")]
    # the command on a line of its own, whole, so it can be copied from the Markdown source
    return [_wrap(f"- **Slice to label map** (`champion`): {text}"),
            f"  Reproduce: `{info['reproduce']}`."]


def quality_rows(fid: ResultsFile) -> list[list[str]]:
    """Per trained network: its FP32 Dice and the runtimes that stay within the tolerance."""
    verdicts = dice_verdicts(fid.records)
    rows = []
    for model in dict.fromkeys(r.model for r in fid.records):
        eager = next((r for r in fid.records if r.model == model and r.runtime == REFERENCE
                      and r.ok and fields.DICE in r.extra), None)
        if eager is None:
            continue
        keep, beyond = verdicts.get(model, ([], []))
        low = " (below the 0.8 target: the training budget is too small for it)" \
            if eager.extra[fields.DICE] < 0.8 else ""
        rows.append([_name(eager), f"{eager.extra[fields.DICE]:.3f}{low}",
                     ", ".join(f"`{k}`" for k in keep) or "none",
                     ", ".join(f"{rt} ({d:+.3f})" for rt, d in beyond) or DASH])
    return rows


QUALITY_HEADERS = ["network", "FP32 Dice", f"runtimes within {DICE_TOLERANCE} of FP32",
                   "further"]


def scaling_rows(results: ResultsFile) -> list[list[str]]:
    """Per network: the configuration with the most slices per second and the one with the
    lowest per-slice latency, over every runtime and streams x threads split."""
    from segbench.views.scaling import best_keys, config_of

    fastest, quickest = best_keys(results.records)
    rows = []
    for r in _ok(results.records):
        if r.key not in fastest:
            continue
        cfg = config_of(r)
        quick = next((q for q in _ok(results.records) if q.key in quickest
                      and q.model == r.model), None)
        latency = DASH
        if quick is not None:
            qc = config_of(quick)
            latency = (f"`{quick.runtime}` as {qc.streams} x {qc.threads} "
                       f"(p50 {quick.timing['latency_p50_ms']:.0f} ms)")
        rows.append([_name(r), f"`{r.runtime}` as {cfg.streams} stream(s) x {cfg.threads} "
                     f"thread(s) ({r.throughput:.1f} slices/s)", latency])
    return rows


SCALING_HEADERS = ["network", "most slices per second", "lowest latency per slice"]


def _table(rows: list[list[str]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)




def machine_files(results_dir: Path, slug: str | None,
                  names: Sequence[str] = BENCHMARKS) -> dict[str, ResultsFile]:
    """One machine's full results files (``slug``; by default the first found) by benchmark."""
    files = {}
    for name in names:
        paths = [p for p in full_results_files(results_dir, name) if slug in (None, p.stem)]
        if paths:
            files[name] = load(paths[0], name)
    return files


def render(results_dir: Path, slug: str | None = None) -> str:
    """The recommendations from one machine's results (``slug``; by default the first machine
    found), as short paragraphs and tables, and a sentence naming that machine. Seconds per
    whole CT are :func:`answer`'s."""
    files = machine_files(results_dir, slug)
    out: list[str] = []
    out += champion_lines(files)
    out += [_wrap(f"- {line}") for line in fastest_slice(files)]
    if "quantization" in files:
        # the rows' own trained-weight Dice; older runs on random weights borrow the fidelity
        # benchmark's drops for the same network and runtime
        trained = dice_drops(files["quantization"].records) or (
            dice_drops(files["fidelity"].records) if "fidelity" in files else {})
        size = "x".join(map(str, files["quantization"].records[0].shape[2:]))
        out.append(f"\n**Which runtime, per encoder** (encoder + FPN, {size}, `quantization`):\n")
        out.append(_table(runtime_rows(files["quantization"], trained), RUNTIME_HEADERS))
    if "fidelity" in files:
        out.append("\n**Quality on trained weights** (CT phantoms, `fidelity`):\n")
        out.append(_table(quality_rows(files["fidelity"]), QUALITY_HEADERS))
    real = real_ct_lines(results_dir, slug)
    out += real
    if "scaling" in files:
        out.append("\n**Threads or streams** (`scaling`; a whole CT is hundreds of independent "
                   "slices,\nso throughput is what counts for it):\n")
        out.append(_table(scaling_rows(files["scaling"]), SCALING_HEADERS))
    if not out:
        return "_No full runs committed yet._"
    machine = next(iter(files.values())).machine
    but = " (the real-CT quality apart, whose machine it names)" if real else ""
    out.append("\n" + _wrap(f"All of the above{but} was measured on one machine, "
                            f"{describe(machine)}; rerun the benchmarks on your CPU before acting "
                            "on it."))
    return "\n".join(out)

"""Recommendations written from the results, not by hand.

The README's "what to use" section is rendered here from the same results files as the
tables, so its numbers cannot drift from the runs that made them and ``report --check`` covers
them too. Each answer names its evidence (benchmark, runtime, spread or fidelity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from segbench.analysis import dice_drops, dice_verdicts, is_weights_check, own_dice_drop
from segbench.fidelity import AGREEMENT_THRESHOLD, DICE_TOLERANCE
from segbench.machine import describe
from segbench.results import Record, ResultsFile, full_results_files, load
from segbench.runtimes import REFERENCE

BENCHMARKS = ("champion", "whole_ct", "fpn_decoder", "unet_decoder", "quantization", "fidelity",
              "scaling")


def _precision(r: Record) -> str | None:
    """The precision the runtime declared (recorded with every row)."""
    return r.extra.get("precision")


def _ok(records: Sequence[Record]) -> list[Record]:
    """Measured rows, without random-weight twins timed only for the weights check."""
    return [r for r in records if r.ok and r.throughput and not is_weights_check(r)]


def _best(records: Sequence[Record]) -> Record | None:
    return max(_ok(records), key=lambda r: r.throughput, default=None)


def _name(r: Record) -> str:
    return r.extra.get("display", r.model)


def _agreement(r: Record) -> str:
    fid = r.fidelity or {}
    dice = r.extra.get("dice")
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


def runtime_per_model(quant: ResultsFile, trained: dict[tuple[str, str], float]) -> list[str]:
    """Per encoder: the fastest runtime, and whether INT8 beats the best FP32 runtime."""
    lines = []
    models = dict.fromkeys(r.model for r in quant.records)
    for model in models:
        rows = [r for r in quant.records if r.model == model]
        best = _best(rows)
        fp32 = _best([r for r in rows if _precision(r) == "fp32"])
        int8 = _best([r for r in rows if _precision(r) == "int8"])
        if best is None:
            continue
        text = f"{_name(best)}: fastest is `{best.runtime}` ({best.throughput:.1f} img/s"
        eager = next((r for r in _ok(rows) if r.runtime == REFERENCE), None)
        if eager and best is not eager:
            text += f", {best.throughput / eager.throughput:.2f}x eager"
        text += ")"
        if fp32 and int8:
            ratio = int8.throughput / fp32.throughput
            verdict = "pays" if ratio > 1 else "does not pay"
            text += (f"; INT8 {verdict}: best INT8 (`{int8.runtime}`) is {ratio:.2f}x the best "
                     f"FP32 (`{fp32.runtime}`)")
            agree = (int8.fidelity or {}).get("label_agreement")
            if agree is not None and int8.weights == "random":
                flag = " (below the 99 % mark)" if agree < AGREEMENT_THRESHOLD else ""
                text += f", {agree:.1f} % label agreement on random weights{flag}"
            drop = trained.get((model, int8.runtime))
            if drop is not None:
                text += f", Dice {drop:+.3f} on trained weights"
        lines.append(text + ".")
    return lines


def per_ct(files: dict[str, ResultsFile]) -> list[str]:
    """Seconds per whole CT of every method's measured loop (the whole_ct benchmark)."""
    results = files.get("whole_ct")
    if results is None:
        return []
    from segbench.wholect_bench import headline

    return headline(results.records)


def champion_lines(files: dict[str, ResultsFile]) -> list[str]:
    """The champion slice -> label map pipeline with its exact recipe and how to reproduce it."""
    results = files.get("champion")
    if results is None:
        return []
    from segbench.champion import headline, recipe

    info = recipe(results.records)
    if info is None:
        return [headline(results.records)]
    return [f"**Slice to label map** (`champion`): {headline(results.records)} Reproduce: "
            f"`{info['reproduce']}`."]


def trained_quality(fid: ResultsFile) -> list[str]:
    """Per trained network: its FP32 Dice and the runtimes that stay within the tolerance."""
    verdicts = dice_verdicts(fid.records)
    lines = []
    for model in dict.fromkeys(r.model for r in fid.records):
        eager = next((r for r in fid.records if r.model == model and r.runtime == REFERENCE
                      and r.ok and "dice" in r.extra), None)
        if eager is None:
            continue
        keep, beyond = verdicts.get(model, ([], []))
        lose = [f"{rt} ({d:+.3f})" for rt, d in beyond]
        low = ", below the 0.8 target: the training budget is too small for it" \
            if eager.extra["dice"] < 0.8 else ""
        lines.append(f"{_name(eager)} (FP32 Dice {eager.extra['dice']:.3f}{low}): within "
                     f"{DICE_TOLERANCE} of FP32: {', '.join(f'`{k}`' for k in keep) or 'none'}"
                     + (f"; further: {', '.join(lose)}" if lose else "") + ".")
    return lines


def scaling_lines(results: ResultsFile) -> list[str]:
    """Per network: the configuration with the most slices per second and the one with the
    lowest per-slice latency, over every runtime and streams x threads split."""
    from segbench.streams import best_keys, config_of

    fastest, quickest = best_keys(results.records)
    lines = []
    for r in _ok(results.records):
        if r.key not in fastest:
            continue
        cfg = config_of(r)
        quick = next((q for q in _ok(results.records) if q.key in quickest
                      and q.model == r.model), None)
        text = (f"{_name(r)}: most slices per second with `{r.runtime}` as {cfg.streams} "
                f"stream(s) x {cfg.threads} thread(s) ({r.throughput:.1f} slices/s)")
        if quick is not None:
            qc = config_of(quick)
            text += (f"; lowest latency with `{quick.runtime}` as {qc.streams} x {qc.threads} "
                     f"(p50 {quick.timing['latency_p50_ms']:.0f} ms)")
        lines.append(text + ".")
    return lines


def render(results_dir: Path, slug: str | None = None) -> str:
    """The recommendations from one machine's results (``slug``; by default the first machine
    found), and a sentence naming that machine."""
    files = {}
    for name in BENCHMARKS:
        paths = [p for p in full_results_files(results_dir, name) if slug in (None, p.stem)]
        if paths:
            files[name] = load(paths[0], name)
    out: list[str] = []
    out += [f"- {line}" for line in champion_lines(files)]
    out += [f"- {line}" for line in per_ct(files)]
    out += [f"- {line}" for line in fastest_slice(files)]
    if "quantization" in files:
        # the rows' own trained-weight Dice; older runs on random weights borrow the fidelity
        # benchmark's drops for the same network and runtime
        trained = dice_drops(files["quantization"].records) or (
            dice_drops(files["fidelity"].records) if "fidelity" in files else {})
        size = "x".join(map(str, files["quantization"].records[0].shape[2:]))
        out.append(f"- **Which runtime, per encoder** (encoder + FPN, {size}, `quantization`):")
        out += [f"  - {line}" for line in runtime_per_model(files["quantization"], trained)]
    if "fidelity" in files:
        out.append("- **Quality on trained weights** (CT phantoms, `fidelity`):")
        out += [f"  - {line}" for line in trained_quality(files["fidelity"])]
    if "scaling" in files:
        out.append("- **Threads or streams** (`scaling`; a whole CT is hundreds of independent "
                   "slices, so throughput is what counts for it):")
        out += [f"  - {line}" for line in scaling_lines(files["scaling"])]
    if not out:
        return "_No full runs committed yet._"
    machine = next(iter(files.values())).machine
    out.append(f"\nAll of the above was measured on one machine, {describe(machine)}; rerun the "
               "benchmarks on your CPU before acting on it.")
    return "\n".join(out)

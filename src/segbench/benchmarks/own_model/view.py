"""How the own_model benchmark is shown: per CT, nnU-Net's own predictor and command beside the
project's loop under each runtime (seconds by stage, peak memory, Dice against the predictor's
labels); per cohort, seconds per CT (median, p90), CTs per hour and machine-hours per 1,000
CTs. Results only: no torch, no engine."""

from __future__ import annotations

from typing import Any, Sequence

from tabulate import tabulate

from segbench import fields
from segbench.benchmarks.whole_ct.view import _gib, _secs
from segbench.results import Record
from segbench.tables import DASH

DICE_FLOOR = 0.99  # plan.DICE_FLOOR (the view never imports the plan)
STAGES = ("preprocess", "predict", "accumulate", "argmax", "resample back", "nnU-Net predictor")


def per_ct_records(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if r.extra.get("method") in ("predictor", "loop-nnunet-back",
                                                            "loop", "loop-slabs")
            or r.key == "command:nnunet:one"]


def seconds(r: Record) -> float | None:
    """Seconds per CT: the timed loop, or a command's median run."""
    if not r.ok or not r.timing:
        return None
    if "latency_p50_ms" in r.timing:
        return r.timing["latency_p50_ms"] / 1e3
    return r.timing["median_s"] / max(1, int(r.extra.get("cts", 1)))


def predictor_seconds(records: Sequence[Record]) -> float | None:
    ref = next((r for r in records if r.extra.get("method") == "predictor"), None)
    return seconds(ref) if ref else None


def dice(r: Record) -> float | None:
    if r.extra.get("method") == "predictor":
        return 1.0 if r.ok else None
    return r.extra.get("dice_vs_eager")


def title(r: Record) -> str:
    """The row's pipeline (a cell's title; a command's display)."""
    return str(r.extra.get("title") or r.extra.get("display") or r.model)


def model_name(records: Sequence[Record]) -> str:
    """The model folder the rows ran: its dataset and configuration."""
    for r in records:
        info = r.extra.get(fields.NNUNET_MODEL) or {}
        if all(k in info for k in ("dataset", "architecture", "configuration", "fold")):
            return (f"{info['dataset']} ({info['architecture']}, {info['configuration']}, "
                    f"fold {info['fold']}, {info.get('classes', '?')} classes)")
    return "the model"


def peak(r: Record) -> str:
    if r.extra.get("loop_peak_rss_bytes"):
        return _gib(r.extra["loop_peak_rss_bytes"])
    tree = (r.memory or {}).get("peak_rss_tree_mb")
    return _gib(int(tree * 2**20)) + " (tree)" if tree else DASH


def verdict(r: Record) -> str:
    d = dice(r)
    if not r.ok:
        return f"{r.status}: {r.reason}"
    if d is None:
        return "no labels to compare"
    return "agrees" if d >= DICE_FLOOR else f"differs (Dice < {DICE_FLOOR})"


PER_CT_HEADERS = ["pipeline", "runtime", "s / CT", "preprocess s", "network + blend s",
                  "back s", "peak memory", "estimated buffers + tile", "Dice vs nnUNetPredictor",
                  "vs nnUNetPredictor", "verdict"]


def per_ct_rows(records: Sequence[Record]) -> list[list[str]]:
    base = predictor_seconds(records)
    rows = []
    for r in per_ct_records(records):
        s = seconds(r)
        st = r.extra.get("stages_s") or {}
        network = (st.get("predict", 0.0) + st.get("accumulate", 0.0)) if st else None
        # the way back includes the argmax (the slab way takes it per slab, in its own stage)
        back = st.get("resample back", 0.0) + st.get("argmax", 0.0)
        d = dice(r)
        rows.append([title(r), r.runtime, _secs(s),
                     _secs(st.get("preprocess")) if "preprocess" in st else DASH,
                     _secs(network) if network else DASH,
                     _secs(back) if "resample back" in st else DASH,
                     peak(r), _gib(r.extra.get("estimated_peak_bytes")),
                     DASH if d is None else f"{d:.4f}",
                     f"{base / s:.2f}x" if base and s else DASH, verdict(r)])
    return rows


def _dice(r: Record) -> str:
    d = dice(r)
    return DASH if d is None else f"{d:.4f}"


def _delta_gib(a: int | None, b: int | None) -> str:
    return DASH if not a or not b else f"{(a - b) / 2**30:+.1f} GiB"


def slab_costs(records: Sequence[Record]) -> list[str]:
    """What labels per slab cost against the chunked way back under the same runtime: seconds,
    estimate and measured peak; or the chunked way's estimate where the budget refused it."""
    out = []
    for r in per_ct_records(records):
        chunked = next((c for c in records if c.extra.get("method") == "loop"
                        and c.runtime == r.runtime), None)
        if r.extra.get("method") != "loop-slabs" or chunked is None or seconds(r) is None:
            continue
        est, est_c = (x.extra.get(fields.ESTIMATED_PEAK_BYTES) for x in (r, chunked))
        if seconds(chunked) is None:
            out.append(f"Labels per slab under {r.runtime}: {seconds(r):.1f} s per CT, "
                       f"estimate {_gib(est)}, Dice {_dice(r)} against nnUNetPredictor, where "
                       f"the chunked way back ({_gib(est_c)}) did not run ({chunked.status}).")
            continue
        peaks = [x.extra.get(fields.LOOP_PEAK_RSS_BYTES) for x in (r, chunked)]
        out.append(f"Labels per slab under {r.runtime} against the chunked way back: "
                   f"{seconds(r) - seconds(chunked):+.1f} s per CT ({seconds(r):.1f} s), "
                   f"estimate {_delta_gib(est, est_c)}, measured peak {_delta_gib(*peaks)}, "
                   f"Dice {_dice(r)} against nnUNetPredictor.")
    return out


COHORT_HEADERS = ["cohort pipeline", "runtime", "CTs", "median s / CT", "p90 s / CT",
                  "CTs per hour", "machine-hours per 1,000 CTs", "peak memory"]


def cohort_records(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if r.extra.get("cohort") or r.extra.get("method") == "cohort"]


def cts_per_hour(r: Record) -> float | None:
    if not r.ok:
        return None
    return r.extra.get("cts_per_hour")


def cohort_rows(records: Sequence[Record]) -> list[list[str]]:
    rows = []
    for r in cohort_records(records):
        rate = cts_per_hour(r)
        rows.append([title(r), r.runtime, str(r.extra.get("cts", DASH)),
                     _secs(r.extra.get("median_ct_s")), _secs(r.extra.get("p90_ct_s")),
                     DASH if not rate else f"{rate:.0f}",
                     DASH if not rate else f"{1000.0 / rate:.1f}",
                     peak(r) if r.ok else f"{r.status}: {r.reason}"])
    return rows


def best_cohort(records: Sequence[Record]) -> Record | None:
    ok = [r for r in cohort_records(records) if cts_per_hour(r)]
    return max(ok, key=cts_per_hour) if ok else None


SHORT = {"command:nnunet:cohort": "nnUNetv2_predict on the folder",
         "command:totalsegmentator:fast:ml:cohort": "TotalSegmentator --fast --ml per CT"}


def headline(records: Sequence[Record]) -> list[str]:
    out = []
    base = predictor_seconds(records)
    loops = [r for r in per_ct_records(records)
             if r.extra.get("method", "").startswith("loop") and seconds(r)
             and (dice(r) or 0) >= DICE_FLOOR]
    if base and loops:
        best = min(loops, key=seconds)
        out.append(f"Fastest pipeline agreeing with nnUNetPredictor (Dice {dice(best):.4f}): "
                   f"the {title(best)} under {best.runtime}, {seconds(best):.1f} s per CT "
                   f"against the predictor's {base:.1f} s ({base / seconds(best):.2f}x).")
    best = best_cohort(records)
    if best is not None:
        rate = cts_per_hour(best)
        others = [f"{SHORT.get(r.key, title(r))} {cts_per_hour(r):.0f}"
                  for r in cohort_records(records) if r.family == "peer" and cts_per_hour(r)]
        how = "overlapped" if best.extra.get("overlap") else "one after another"
        out.append(f"Cohort of {best.extra.get('cts')} CTs: {rate:.0f} CTs per hour ({how}, "
                   f"{best.runtime}), {1000.0 / rate:.1f} machine-hours per 1,000 CTs"
                   + (f"; {', '.join(others)}." if others else "."))
    return out


ONNX_HEADERS = ["ONNX network, slice-wise", "runtime", "s / CT", "peak memory",
                "Dice vs ONNX Runtime FP32", "agreement %", "status"]


def onnx_rows(records: Sequence[Record]) -> list[list[str]]:
    rows = []
    for r in records:
        if r.extra.get("method") != "onnx":
            continue
        d = r.extra.get("dice_vs_eager")
        a = r.extra.get("agreement_vs_eager")
        rows.append([str(r.extra.get("title") or r.model), r.runtime, _secs(seconds(r)), peak(r),
                     DASH if d is None else f"{d:.4f}", DASH if a is None else f"{a:.2f}",
                     "ok" if r.ok else f"{r.status}: {r.reason}"])
    return rows


def tables(view: Any, results: Any) -> list[tuple[str, str]]:
    records = results.records
    parts = []
    lines = headline(records)
    if lines:
        parts.append(("", " ".join(lines)))
    rows = per_ct_rows(records)
    if rows:
        parts.append((f"One CT, {model_name(records)}: nnU-Net's own predictor and command, "
                      "and the project's loop under each runtime",
                      tabulate(rows, PER_CT_HEADERS, tablefmt="github")))
    lines = slab_costs(records)
    if lines:
        parts.append(("", " ".join(lines)))
    rows = cohort_rows(records)
    if rows:
        parts.append(("A cohort: the network loaded once (without and with the next CT read "
                      "during the current one), nnU-Net's folder mode, the tool per file",
                      tabulate(rows, COHORT_HEADERS, tablefmt="github")))
    rows = onnx_rows(records)
    if rows:
        parts.append(("An ONNX network (slice-wise), scored against its own ONNX Runtime FP32 "
                      "labels", tabulate(rows, ONNX_HEADERS, tablefmt="github")))
    shown = {id(r) for r in per_ct_records(records) + cohort_records(records)}
    rest = [r for r in records if id(r) not in shown and r.extra.get("method") != "onnx"]
    if rest:  # rows of no kind above (a cell of another version): never dropped silently
        parts.append(("Other rows", tabulate(
            [[title(r), r.runtime, _secs(seconds(r)),
              "ok" if r.ok else f"{r.status}: {r.reason}"] for r in rest],
            ["row", "runtime", "s", "status"], tablefmt="github")))
    return parts


def brief(results: Any) -> str:
    """The README's form: the headline, the cohort table, the machine and the page."""
    from segbench.machine import describe

    records = results.records
    lines = headline(records)
    if not lines:
        return "_No own_model run with a faithful pipeline committed yet._"
    return (" ".join(lines) + f" {describe(results.machine)}; {model_name(records)}; "
            "[tables](docs/results/own_model.md).\n")

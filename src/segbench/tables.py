"""Markdown tables from records, and the provenance line under each.

A table is a list of :class:`Column` objects applied to records; the columns every benchmark
uses are defined once here. What is computed from records (speed-ups, verdicts) lives in
:mod:`segbench.analysis`; where tables go in the README lives in :mod:`segbench.readme`.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from tabulate import tabulate

from segbench import fields
from segbench.analysis import (  # noqa: F401
    dice_drops,
    dice_verdicts,
    fastest,
    is_weights_check,
    model_key,
    own_dice_drop,
    significant,
    speedups,
    weights_check_groups,
    within_spread,
)
from segbench.fidelity import (
    AGREEMENT_THRESHOLD,
    DICE_TOLERANCE,
    TRAINED_DICE_FLOOR,
    below_threshold,
)
from segbench.machine import describe
from segbench.results import Record, ResultsFile
from segbench.runtimes import REFERENCE

DASH = "–"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Record], Any]
    needs_ok: bool = True  # blank on failed/skipped rows


def _t(r: Record, key: str) -> float | None:
    return (r.timing or {}).get(key)


def millions(n: int | None) -> str:
    return DASH if n is None else f"{n / 1e6:.2f}M"


def num(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def throughput_text(timing: dict[str, Any] | None) -> str:
    if not timing:
        return DASH
    return f"{timing['throughput']:.1f} ± {timing['throughput_iqr']:.1f}"


def status_text(r: Record, dice_drop: float | None = None) -> str:
    """"ok" or the failure, with notes. The quality note comes from trained weights when
    the Dice drop (this network and runtime's Dice minus FP32's, on phantoms: ``dice_drop``, or
    the row's own) is known: flagged only beyond DICE_TOLERANCE. Without it, label agreement
    with FP32 on random weights is all there is, and the note says so: near-tied random logits
    flip labels that a trained network's would not. A trained row without a Dice (an encoder's
    features) is never judged by label agreement."""
    if dice_drop is None:
        dice_drop = own_dice_drop(r)
    if r.status != "ok":
        return f"{r.status}: {r.reason}" if r.reason else r.status
    notes = []
    if r.timing and r.timing.get("noisy"):
        notes.append("noisy")
    if r.timing and r.timing.get("contended"):
        notes.append("contended")
    dice = r.extra.get(fields.DICE)
    if dice is not None and dice < TRAINED_DICE_FLOOR:  # "within 0.01" would say little
        notes.append(f"barely trained: Dice {dice:.2f} < {TRAINED_DICE_FLOOR:g}")
    if dice_drop is not None:
        if dice_drop < -DICE_TOLERANCE:
            notes.append(f"trained Dice {dice_drop:+.3f} vs FP32")
    elif r.weights == "random" and below_threshold(r.fidelity):
        notes.append(f"random-weight agreement < {AGREEMENT_THRESHOLD:g} %")
    if r.quick:
        notes.append("quick")
    return "ok" + (f" ({', '.join(notes)})" if notes else "")


def compile_seconds(r: Record) -> float | None:
    """Preparation (export, session, compile wrapper) plus the first call (lazy compile)."""
    if r.prepare_s is None or not r.timing:
        return None
    return r.prepare_s + r.timing["first_call_s"]


def submodule_share(r: Record, name: str) -> float | None:
    """Share of the whole network's time spent in submodule ``name``, from timing it alone."""
    whole, alone = _t(r, "throughput"), (r.submodules.get(name) or {}).get("throughput")
    if not whole or not alone:
        return None
    return 100.0 * whole / alone


# The columns benchmarks pick from --------------------------------------------------------------

MODEL = Column("model", fields.display, needs_ok=False)
RUNTIME = Column("runtime", lambda r: r.runtime, needs_ok=False)
PARAMS_WITH_HEAD = Column("params (with head)",
                          lambda r: millions(r.extra.get(fields.PARAMS_WITH_HEAD)))
BACKBONE_PARAMS = Column("backbone params", lambda r: millions(r.params))
GFLOPS = Column("GFLOPs", lambda r: num(r.gflops, 2))
THROUGHPUT = Column("img/s (median ± IQR)", lambda r: throughput_text(r.timing))
LATENCY = Column("latency p50 / p99 (ms)",
                 lambda r: f"{num(_t(r, 'latency_p50_ms'))} / {num(_t(r, 'latency_p99_ms'))}")
COMPILE = Column("compile (s)", lambda r: num(compile_seconds(r)))
FORWARD_MB = Column("forward peak (MB)",
                    lambda r: num((r.memory.get("forward_peak_bytes") or float("nan")) / 2**20))
ENCODER_SHARE = Column("encoder share (%)", lambda r: num(submodule_share(r, "encoder"), 0))
STATUS = Column("status", status_text, needs_ok=False)


def fidelity_text(r: Record) -> str:
    """Compact fidelity against FP32 eager: label agreement % / SQNR dB (feature maps: SQNR)."""
    if r.runtime == REFERENCE:
        return "reference"
    fid = r.fidelity
    if not fid:
        return DASH
    sqnr = f"{num(fid['sqnr_db'], 1)} dB"
    if fid.get("label_agreement") is None:
        return sqnr
    return f"{fid['label_agreement']:.2f} % / {sqnr}"


FIDELITY = Column("vs FP32: agree / SQNR", fidelity_text)

PARAMS_ENC_DEC = Column("params (enc+dec)", lambda r: millions(r.extra.get(fields.PARAMS_ENC_DEC)))


def dice_drop_text(r: Record) -> str:
    drop = own_dice_drop(r)
    if drop is None:
        return DASH
    return "reference" if r.runtime == REFERENCE else f"{drop:+.3f}"


# trained weights, scored on held-out phantoms after timing (scenarios.PhantomDice)
DICE = Column("Dice vs truth", lambda r: num(r.extra.get(fields.DICE), 3))
DICE_DROP = Column("Dice vs FP32 eager", dice_drop_text)


def throughput(r: Record) -> float | None:
    return _t(r, "throughput")


# the table of the decoder benchmarks (fpn_decoder, unet_decoder)
DECODER_COLUMNS = (MODEL, RUNTIME, PARAMS_ENC_DEC, GFLOPS, THROUGHPUT, LATENCY, FORWARD_MB,
                   ENCODER_SHARE, DICE, DICE_DROP, FIDELITY, STATUS)


def efficiency(r: Record) -> float | None:
    tp = _t(r, "throughput")
    return tp / (r.params / 1e6) if tp and r.params else None


EFFICIENCY = Column("img/s per M params", lambda r: num(efficiency(r)))


def fidelity_columns() -> list[Column]:
    def get(key: str, digits: int) -> Column:
        header = {"max_abs": "max abs err", "sqnr_db": "SQNR (dB)",
                  "label_agreement": "label agree (%)",
                  "mean_dice": "Dice vs FP32 (timed slice)"}[key]
        fmt = (lambda v: f"{v:.2e}") if key == "max_abs" else (lambda v: num(v, digits))
        return Column(header, lambda r: DASH if not r.fidelity or r.fidelity.get(key) is None
                      else fmt(r.fidelity[key]))
    return [get("max_abs", 0), get("sqnr_db", 1), get("label_agreement", 2), get("mean_dice", 3)]


# Rendering -------------------------------------------------------------------------------------

def row(record: Record, columns: Sequence[Column]) -> list[str]:
    cells = []
    for col in columns:
        if col.needs_ok and not record.ok:
            cells.append(DASH)
        else:
            value = col.value(record)
            cells.append(DASH if value is None else str(value))
    return cells


def ok_first(key: Callable[[Record], Any]) -> Callable[[Record], Any]:
    """Sort key: measured rows by ``key`` (descending), failed/skipped rows last."""
    def sort_key(r: Record) -> tuple:
        value = key(r) if r.ok else None
        return (value is None, -(value or 0))
    return sort_key


def render_table(records: Iterable[Record], columns: Sequence[Column],
                 sort_key: Callable[[Record], Any] | None = None) -> str:
    records = list(records)
    if sort_key is not None:
        records.sort(key=sort_key)
    return tabulate([row(r, columns) for r in records], headers=[c.header for c in columns],
                    tablefmt="github", disable_numparse=True)


def versions(results: ResultsFile, package: str) -> list[str]:
    """Every version of ``package`` the file's records ran with (a record without its own
    versions, written before records carried them, counts with the machine block's)."""
    fallback = results.machine.get("packages", {}).get(package, "?")
    return sorted({(r.packages or {}).get(package, fallback) for r in results.records}
                  or {fallback})


def provenance(results: ResultsFile) -> str:
    """The line under every table: where, when and with what the numbers were measured."""
    m = results.machine
    isa = ", ".join(k for k, v in m.get("isa", {}).items() if v) or "none reported"
    dates = sorted({r.date[:10] for r in results.records if r.date})
    commits = sorted({r.commit for r in results.records if r.commit})
    threads = sorted({r.threads for r in results.records})
    protocols = sorted({(p["repeats"], p["repeat_seconds"], p["repeat_calls"])
                        for p in (r.protocol for r in results.records) if p})
    timed = "; ".join(f"{n} repeats of >= {sec:g} s and >= {calls} calls"
                      for n, sec, calls in protocols) or "?"
    quick = (" **quick smoke run, not for publication**"
             if any(r.quick for r in results.records) else "")
    contended = sum(1 for r in results.records if r.timing and r.timing.get("contended"))
    busy = f" {contended} rows were timed while other work ran (`contended`)." if contended else ""
    return (f"Measured on {describe(m)} ({m.get('memory_gib', '?')} GiB; {isa}), "
            f"threads {', '.join(map(str, threads))}, "
            f"torch {', '.join(versions(results, 'torch'))}, "
            f"onnxruntime {', '.join(versions(results, 'onnxruntime'))}, "
            f"openvino {', '.join(versions(results, 'openvino'))}; "
            f"{timed}; "
            f"run {' to '.join(dates[::max(1, len(dates) - 1)]) or '?'}, "
            f"commit {', '.join(commits) or '?'}.{quick}{busy}")


# Runtime comparison (quantization and any table with several runtimes per model) -----------




def float_ops_text(r: Record) -> str:
    """For INT8 rows: the op types that still run in float in the executed graph (why INT8
    may not pay): ORT's optimised graph, or OpenVINO's runtime model."""
    if r.extra.get(fields.PRECISION) != "int8":
        return DASH
    ops = (r.runtime_info.get("quantization", {}).get("stayed_float")
           or r.runtime_info.get("layers", {}).get("float_layer_types"))
    if not ops:
        return "none" if ops is not None else DASH
    return ", ".join(f"{name} x{count}" for name, count in sorted(ops.items()))




def runtime_table(records: Sequence[Record], baseline: str = REFERENCE,
                  trained: dict[tuple[str, str], float] | None = None) -> str:
    """One row per (model, runtime): speed, speed-up over the baseline, fidelity, best mark,
    and the Dice drop on trained weights: ``trained`` (see :func:`dice_drops`, e.g. from another
    benchmark's records), else the rows' own where they were scored on phantoms."""
    ups, best = speedups(records, baseline), fastest(records)
    trained = trained or dice_drops(records)
    scored = [DICE] if any(fields.DICE in r.extra for r in records) else []
    trained_column = [Column("Dice drop vs FP32, trained", lambda r: DASH if (r.model, r.runtime)
                             not in trained else f"{trained[(r.model, r.runtime)]:+.3f}",
                             needs_ok=False)] if trained else []
    columns = [MODEL,
               Column("runtime", lambda r: r.runtime + (" **best**" if r.key in best else ""),
                      needs_ok=False),
               THROUGHPUT,
               Column(f"x vs {baseline}", lambda r: num(ups.get(r.key), 2)),
               *scored,
               *trained_column,
               *fidelity_columns(),
               Column("left in float", float_ops_text),
               Column("status", lambda r: status_text(
                   r, (trained or {}).get((r.model, r.runtime))), needs_ok=False)]
    order = {name: i for i, name in enumerate(dict.fromkeys(model_key(r) for r in records))}
    return render_table(records, columns,
                        sort_key=lambda r: (order[model_key(r)], -(r.throughput or 0)))



def weights_check_table(records: Sequence[Record]) -> str | None:
    """Trained rows beside their random-weight twins (timed just before and just after them,
    same network, input and runtime; see :func:`segbench.analysis.weights_check_groups`);
    None if the run has no such rows."""
    groups = weights_check_groups(records)
    if not groups:
        return None
    rows = []
    for trained, twins in groups:
        speeds = [t.throughput for t in twins]
        mean = sum(speeds) / len(speeds)
        rows.append([fields.display(trained), trained.runtime,
                     " / ".join(throughput_text(t.timing) for t in twins),
                     throughput_text(trained.timing), num(trained.throughput / mean, 3),
                     num(100.0 * (max(speeds) - min(speeds)) / mean, 1),
                     "no" if within_spread(trained, twins) else "yes"])
    return tabulate(rows, headers=["model", "runtime", "random weights img/s (before / after)",
                                   "trained weights img/s", "trained / random (mean)",
                                   "random twins differ by (%)",
                                   "outside the random rows' spread"],
                    tablefmt="github", disable_numparse=True)


def weights_note(records: Sequence[Record]) -> str:
    """Which weights the shown rows have (random-weight check rows aside)."""
    kinds = sorted({r.weights for r in records if not is_weights_check(r)})
    return f"Weights: {'; '.join(kinds)}." if kinds else ""


# Two runs side by side -------------------------------------------------------------------------



def compare_table(a: ResultsFile, b: ResultsFile) -> str:
    """The cells two results files share, with B/A throughput and a significance mark."""
    if a.benchmark != b.benchmark:
        raise ValueError(f"cannot compare {a.benchmark!r} with {b.benchmark!r}")
    b_by_key = {r.key: r for r in b.records}
    rows = []
    for ra in a.records:
        rb = b_by_key.get(ra.key)
        if rb is None:
            continue
        both = ra.ok and rb.ok and ra.throughput and rb.throughput
        ratio = rb.throughput / ra.throughput if both else None
        mark = DASH if not both else ("yes" if significant(ra, rb) else "no (IQRs overlap)")
        rows.append([fields.display(ra), ra.runtime,
                     throughput_text(ra.timing) if ra.ok else status_text(ra),
                     throughput_text(rb.timing) if rb.ok else status_text(rb),
                     num(ratio, 2), mark])
    headers = ["model", "runtime", f"A: {a.machine.get('slug', '?')}",
               f"B: {b.machine.get('slug', '?')}", "B / A", "significant"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


PROSE_WIDTH = 100
_MARKUP = re.compile(r"([-+*>#|]|\d+[.)])(\s|$)")


def wrap_prose(text: str, width: int = PROSE_WIDTH) -> str:
    """A paragraph as lines a person reads in the Markdown source (Markdown joins them
    again): a bullet's lines are indented under it, and no line may start like a list, a
    heading or a table row."""
    indent = "  " if text.startswith("- ") else ""
    lines = [text]
    for w in range(width, width - 20, -1):
        lines = textwrap.wrap(text, w, subsequent_indent=indent, break_long_words=False,
                              break_on_hyphens=False)
        if not any(_MARKUP.match(line.strip()) for line in lines[1:]):
            break
    return "\n".join(lines)


def wrap_markdown(text: str, width: int = PROSE_WIDTH) -> str:
    """Every long prose line of generated Markdown wrapped; tables, headings and code kept."""
    out = []
    for line in text.split("\n"):
        keep = (len(line) <= width or line.startswith(("|", "#", "    ", "```", "<!--"))
                or line.lstrip().startswith("|"))
        out.append(line if keep else wrap_prose(line, width))
    return "\n".join(out)

"""Every key a record's ``extra`` may carry: its name, JSON type and meaning (results schema 2).

``Record.extra`` (and ``Cell.extra``, which is copied into it) stays a dict of JSON values, so
results files keep their shape; what this module adds is the list of keys that may be in it.
Readers use the constants below (``r.extra.get(DICE)``) instead of string literals, writers
are checked when a record is saved (:func:`check`, called by ``results.save``), and tests check
that every key of every committed results file and every literal key a module reads is
declared here. A misspelt key therefore fails a test or the write, never renders a dash.

A new key: one :func:`declare` line here (name, type, one line of meaning), then write it.
Renaming or dropping a key: also map it for older files in ``results.upgrade``.

Torch-free: the views and the report read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

JSON_TYPES = (str, int, float, bool, list, dict)


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[type, ...]  # JSON types of a value (None is always allowed: "not measured")
    meaning: str


DECLARED: dict[str, Field] = {}


def declare(name: str, types: type | tuple[type, ...], meaning: str) -> str:
    """Register one key; returns its name, the constant readers use."""
    kinds = types if isinstance(types, tuple) else (types,)
    if name in DECLARED:
        raise ValueError(f"extra key {name!r} declared twice")
    if not kinds or any(t not in JSON_TYPES for t in kinds):
        raise ValueError(f"extra key {name!r}: types must be among {JSON_TYPES}")
    DECLARED[name] = Field(name, kinds, meaning)
    return name


# --- what the row is (written by the benchmarks' plans and the model families) ---------------
DISPLAY = declare("display", str, "the row's name in tables (a network, a grid, a peer command)")
TITLE = declare("title", str, "a whole-CT method's or chosen pipeline's title in tables")
TAG = declare("tag", str, "a label that makes the cell's key unique within its benchmark")
METHOD = declare("method", str, "the whole-CT / real-CT method key (catalogue METHODS, "
                                "this_cpu's choices, champion_3d's 3d-<variant>)")
NOTE = declare("note", str, "a whole-CT method's 'how' text for its row")
SOURCE = declare("source", str, "the results file a chosen pipeline was read from")
STAND_IN = declare("stand_in", str, "why this row runs in place of the method it is named after")
PRECISION = declare("precision", str, "fp32 / bf16 / int8, as the runtime declared it")
STREAMS = declare("streams", int, "instances of the model timed at once (scaling)")
MODE = declare("mode", str, "scaling: latency or throughput configuration; peer: the "
                            "TotalSegmentator mode (fast, fastest)")
WEIGHTS_CHECK = declare("weights_check", bool, "a cell timed again with trained weights "
                                               "(speed must not depend on them)")
CONTENDED_ATTEMPTS = declare("contended_attempts", list, "contention of earlier attempts "
                                                         "re-timed away (other cores, steal)")
ROW = declare("row", dict, "the champion search's row (stage, network, width, runtime, path, "
                           "batch, breakdown)")
OPTIONS = declare("options", dict, "runtime options a champion_3d row set (e.g. channels_last)")

# --- model facts (``describe`` of the model families) -----------------------------------------
PARAMS_WITH_HEAD = declare("params_with_head", int, "encoder parameters with its classifier")
ENCODER_PARAMS = declare("encoder_params", int, "parameters of the encoder")
DECODER_PARAMS = declare("decoder_params", int, "parameters of the decoder")
HEAD_PARAMS = declare("head_params", int, "parameters of the segmentation head")
PARAMS_ENC_DEC = declare("params_enc_dec", int, "encoder + decoder parameters (head excluded)")
ENCODER = declare("encoder", str, "the 2D pipeline's timm encoder")
WIDTH = declare("width", int, "the 2D pipeline's FPN channels")
PATH = declare("path", str, "the 2D output path: logits to labels (full, lowres, blocked, "
                            "corners)")
ARCHITECTURE = declare("architecture", str, "a 3D network's architecture (PlainConvUNet, "
                                            "STU-Net)")
FEATURES = declare("features", list, "a 3D network's channels per stage")
BLOCKS_PER_STAGE = declare("blocks_per_stage", int, "STU-Net's residual blocks per stage")
PAPER_PARAMS = declare("paper_params", str, "STU-Net's parameter count as its paper states it")
PATCH = declare("patch", list, "a 3D network's plan patch (z, y, x)")
SPACING_MM = declare("spacing_mm", float, "a 3D network's plan spacing, mm")
SIZE_MULTIPLE = declare("size_multiple", int, "a 3D network's input sides must be multiples")
TOOL_OUTPUTS = declare("tool_outputs", list, "outputs of each of the tool's part networks")
WEIGHTS_3D = declare("weights_3d", str, "the 3D phantom training recipe of the weights")

# --- quality -----------------------------------------------------------------------------------
DICE = declare("dice", float, "foreground mean Dice against the phantom's truth")
DICE_FP32 = declare("dice_fp32", float, "the same Dice of FP32 eager on the same network")
DICE_PER_ORGAN = declare("dice_per_organ", dict, "Dice per label {label: Dice}")
EVAL_SLICES = declare("eval_slices", int, "held-out phantom slices the Dice is measured on")
DICE_VS_EAGER = declare("dice_vs_eager", float, "foreground mean Dice against the FP32 eager "
                                                "labels of the same pipeline (reference)")
AGREEMENT_VS_EAGER = declare("agreement_vs_eager", float, "voxels agreeing with the FP32 eager "
                                                          "reference's labels, percent")

# --- whole-CT loops (whole_ct, champion_3d, this_cpu; pipelines.scenario) ---------------------
WHOLE_CT = declare("whole_ct", bool, "the record times a whole-CT loop")
CT_SOURCE = declare("ct_source", str, "the CT: a phantom's description or a NIfTI file")
CT_SHAPE = declare("ct_shape", list, "the CT's shape (z, y, x)")
CT_SPACING = declare("ct_spacing", list, "the CT's spacing (z, y, x), mm")
CT_UNUSUAL = declare("ct_unusual", list, "what looks unusual about a given CT")
GRID = declare("grid", (list, str), "whole-CT: the network's grid (z, y, x); real_ct: the "
                                    "ceiling's grid key")
PASSES = declare("passes", int, "network passes of one CT (tiles or slice batches)")
NETWORKS = declare("networks", int, "networks run one after another per CT (one is timed)")
STAGES_S = declare("stages_s", dict, "seconds per loop stage {stage: s}, one CT")
LOOP_PEAK_RSS_BYTES = declare("loop_peak_rss_bytes", int, "peak resident memory of one loop")
LOOPS_RUN = declare("loops_run", int, "whole loops the cell ran (warm-up included)")
PIPELINE = declare("pipeline", dict, "the pipeline as catalogue.Pipeline.to_dict()")
WARMUP = declare("warmup", str, "what ran before the timed loop")
SECONDS_PER_PASS = declare("seconds_per_pass", float, "one network pass timed alone, s")
ESTIMATE_S = declare("estimate_s", float, "passes x seconds_per_pass: the per-pass estimate")
STAGE = declare("stage", str, "the champion_3d search stage that put the row there")
VARIANT = declare("variant", str, "champion_3d's pipeline variant (tool, whole-tile, ...)")
HOW = declare("how", str, "champion_3d: what the row changes")
REFERENCE_ROW = declare("reference_row", bool, "champion_3d's reference (tool settings, eager)")

# --- the real TotalSegmentator as a peer (peers/) ----------------------------------------------
PEER = declare("peer", str, "the peer tool's name")
MULTILABEL = declare("multilabel", bool, "the peer wrote one multi-label file (--ml)")
TOOL_OPTIONS = declare("tool_options", list, "more of the tool's own command-line options")
WEIGHTS_NOTE = declare("weights_note", str, "what the peer's planted random weights mean")
PLANTED = declare("planted", dict, "the planted home per mode (model dir, params, outputs)")
RUNS = declare("runs", list, "each peer run: stages from its log, exit code, network attempts")
TOOL_STAGES = declare("tool_stages", dict, "the peer's stages from its log, median over runs "
                                           "{stage: {seconds, runs_s, tiles}}")
FAITHFULNESS = declare("faithfulness", dict, "the own --fast pipeline against the tool, "
                                             "same run (ratios own / tool)")

# --- a user's own network (own_model; ownnet/, pipelines/nnunet.py, pipelines/cohort.py) -----
NNUNET_MODEL = declare("nnunet_model", dict, "the nnU-Net model folder's facts (folder, dataset, "
                                             "fold, configuration, trainer, architecture, "
                                             "patch, spacing, classes, mirror axes)")
ESTIMATED_PEAK_BYTES = declare("estimated_peak_bytes", int, "own_model: the loop's buffers and "
                                                            "one tile's forward, estimated")
BUDGET_REFUSED = declare("budget_refused", str, "why --memory-budget kept the cell from running")
CHOSEN_FROM = declare("chosen_from", str, "the key of the row a follow-up cell was chosen from")
OVERLAP = declare("overlap", bool, "cohort: the next CT read while the current one runs")
COHORT = declare("cohort", bool, "the row times a cohort of CTs")
CTS = declare("cts", int, "CTs the row segmented")
PER_CT_S = declare("per_ct_s", list, "cohort: seconds of each CT, in order")
MEDIAN_CT_S = declare("median_ct_s", float, "cohort: median seconds per CT")
P90_CT_S = declare("p90_ct_s", float, "cohort: 90th percentile of seconds per CT")
COHORT_S = declare("cohort_s", float, "cohort: seconds for all its CTs")
CTS_PER_HOUR = declare("cts_per_hour", float, "CTs per hour on this machine")
CT_SHAPES = declare("ct_shapes", list, "cohort: each CT's shape (z, y, x)")
REFERENCE_RUNTIME = declare("reference_runtime", str, "the runtime whose labels the row's "
                                                      "Dice is against (an ONNX file: ort-fp32)")
ONNX = declare("onnx", dict, "the ONNX file: path, digest, input and output shapes, opset")
ONNX_PARAMS = declare("onnx_params", int, "parameters in the ONNX file's initialisers")

# --- real CT (realct/) -------------------------------------------------------------------------
KIND = declare("kind", str, "real_ct row kind: ceiling, inter_annotator or trained")
DATASET = declare("dataset", dict, "the data set: name, split, cases, organs")
ORGANS = declare("organs", dict, "per organ {organ: {dice, nsd, n}}")
CASES = declare("cases", dict, "per case {case: {organ: [Dice, NSD]}}")
MEAN_DICE = declare("mean_dice", float, "foreground mean Dice over organs (real CT)")
MEAN_NSD = declare("mean_nsd", float, "foreground mean NSD over organs (real CT)")
TOLERANCE_MM = declare("tolerance_mm", float, "the NSD tolerance, mm")
ANNOTATORS = declare("annotators", list, "the annotator pairs compared")
ORGANS_LEFT_OUT = declare("organs_left_out", list, "organs not scored (one annotator only)")
TRAINING = declare("training", dict, "how the trained network was trained (steps, budget, ...)")
NETWORK = declare("network", str, "the trained network's name")
CORE_MINUTES = declare("core_minutes", float, "the training budget, core-minutes of CPU time")

# --- kept for old records: read by ct.py's tiled-loop estimates, written by no benchmark now --
LOOP = declare("loop", bool, "a tiled sliding-window loop record (older 2d_vs_3d runs)")
VOLUME = declare("volume", list, "the volume such a loop tiled (1, z, y, x)")


def display(r: Any) -> str:
    """The row's name: ``display`` if set, else the model label."""
    return r.extra.get(DISPLAY, r.model)


def title(r: Any) -> str:
    """A whole-CT row's title: ``title`` if set, else the model label."""
    return r.extra.get(TITLE, r.model)


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):  # a bool is an int to Python, not to this schema
        return bool in types
    if isinstance(value, int) and float in types:
        return True  # JSON writes 2.0 as 2.0 but a computed float may be an int
    return isinstance(value, types)


def problems(extra: Mapping[str, Any]) -> list[str]:
    """What is wrong with one ``extra`` dict as read from JSON: undeclared keys, wrong types."""
    out = []
    for key, value in extra.items():
        f = DECLARED.get(key)
        if f is None:
            out.append(f"undeclared extra key {key!r}")
        elif not _type_ok(value, f.types):
            out.append(f"extra key {key!r} holds {type(value).__name__}, declared "
                       f"{'/'.join(t.__name__ for t in f.types)}")
    return out


def undeclared(keys: Iterable[str]) -> list[str]:
    return [k for k in keys if k not in DECLARED]


def check(extra: Mapping[str, Any], where: str = "") -> None:
    """ValueError naming every problem of ``extra`` (see :func:`problems`)."""
    found = problems(extra)
    if found:
        raise ValueError(f"{where + ': ' if where else ''}{'; '.join(found)} (declare keys in "
                         "segbench/fields.py)")


def check_names(extra: Mapping[str, Any], where: str = "") -> None:
    """ValueError if ``extra`` has an undeclared key (values not yet JSON: a cell's labels)."""
    found = undeclared(extra)
    if found:
        raise ValueError(f"{where + ': ' if where else ''}undeclared extra key(s) "
                         f"{', '.join(map(repr, found))} (declare keys in segbench/fields.py)")

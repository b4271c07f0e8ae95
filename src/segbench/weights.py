"""Weights as an explicit step of a run: every trained network a benchmark's cells need is
trained (or found in the cache) before the first cell starts, with a progress line each.

Training a network takes minutes on 2 cores. Done inside the first cell's worker it would run
under that cell's timeout and its time would hide in a cell that then reads as slow; done here
it is announced, counted apart, and every cell finds its weights in cache/. Random-weight
networks need nothing and are skipped.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from segbench.models import ModelSpec, build_model, training_spec

WEIGHT_OPTIONS = ("train", "recipe")  # spec options that choose trained weights


def trained(spec: ModelSpec) -> bool:
    return any(spec.options.get(k) for k in WEIGHT_OPTIONS)


def distinct(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The trained networks among ``specs``, each once: same family, name, classes and recipe
    (options that do not choose weights, such as an output path, do not make another one; an
    encoder trained through its FPN counts as that FPN)."""
    seen: set[str] = set()
    out = []
    for spec in specs:
        if not trained(spec):
            continue
        spec = training_spec(spec)
        recipe = {k: spec.options[k] for k in WEIGHT_OPTIONS if k in spec.options}
        key = json.dumps([spec.family, spec.name, spec.classes, recipe], sort_keys=True,
                         default=str)
        if key not in seen:
            seen.add(key)
            out.append(spec)
    return out


def weights_file(spec: ModelSpec) -> Path | None:
    """The cache file the trained weights of ``spec`` are loaded from; None for random
    weights."""
    spec = training_spec(spec)
    if spec.options.get("train"):
        from segbench.train import cached_path

        return cached_path(spec.label, spec.classes, **spec.options["train"])
    if spec.options.get("recipe"):
        from segbench.models.nets3d_phantom import Recipe3D, weights_path

        return weights_path(spec.name, spec.classes, Recipe3D.from_dict(spec.options["recipe"]))
    return None


def to_train(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The distinct trained networks of ``specs`` whose weights are not in the cache yet: what
    :func:`prepare` will train (minutes each on 2 cores) before the first cell."""
    out = []
    for spec in distinct(specs):
        path = weights_file(spec)
        if path is not None and not path.exists():
            out.append(spec)
    return out


def prepare(specs: Sequence[ModelSpec], log: TextIO = sys.stderr) -> list[dict[str, Any]]:
    """Train or load every distinct trained network of ``specs``; returns what was done.

    The seconds printed are progress for the person watching, not a measurement.
    """
    todo = distinct(specs)
    done = []
    for i, spec in enumerate(todo, 1):
        print(f"weights [{i}/{len(todo)}] {spec.label} ({spec.classes} classes) ...",
              file=log, flush=True)
        start = time.monotonic()
        build_model(spec)  # trains on a cache miss, loads otherwise
        seconds = time.monotonic() - start
        print(f"weights [{i}/{len(todo)}] {spec.label} ready after {seconds:.0f} s",
              file=log, flush=True)
        done.append({"network": spec.label, "seconds": seconds})
    return done

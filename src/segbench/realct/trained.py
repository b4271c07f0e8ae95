"""Train each method on the training split (same CPU budget), then score it under every runtime.

One row per (method, output path, runtime): per-organ Dice and NSD against the manual labels of
the scored cases, and mean Dice against the same method's FP32 eager labels (the runtime's own
cost). FP32 eager runs first for every method and path. A runtime that fails to prepare or run
becomes a ``failed`` row with its one-line reason; the run goes on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from segbench.realct import methods as methods_mod
from segbench.realct import training
from segbench.realct.dataset import load_case
from segbench.realct.measure_quality import record, run_method
from segbench.results import Record


def _ordered(runtimes: Sequence[str]) -> list[str]:
    from segbench.runtimes import REFERENCE

    return [REFERENCE] + [r for r in runtimes if r != REFERENCE]


def run_trained(plan: Any, save: Callable[[list[Record]], None]) -> None:
    import torch

    from segbench import machine, runtimes

    a, ds = plan.args, plan.dataset
    threads = a.threads or machine.physical_cores()
    torch.set_num_threads(threads)
    classes = ds.classes
    train_names = [c.name for c in plan.train_cases]
    print(f"reading {len(plan.train_cases)} training cases ...", file=sys.stderr)
    train_volumes = [load_case(ds, c) for c in plan.train_cases]
    described = ds.describe(a.test_split, len(plan.test_cases))
    described["train_split"] = a.train_split
    described["train_cases"] = len(train_names)
    for key in a.methods:
        m = methods_mod.method(key)
        m = m.quick() if a.quick else m
        recipe = m.recipe(plan.core_minutes)
        net = methods_mod.trainable(m, classes)
        path = training.weights_path(m.key, ds.name, train_names, classes, recipe)

        def sampler(m: methods_mod.Method = m, recipe: training.Recipe = recipe) -> Any:
            if m.kind == "2d":
                return training.SliceSampler(train_volumes, recipe.seed)
            from segbench.models.nets3d import PLAIN_UNETS

            spacing = PLAIN_UNETS[m.network].spacing_mm
            print(f"resampling {len(train_volumes)} training cases to {spacing:g} mm ...",
                  file=sys.stderr)
            grids = [training.to_network_grid(v, spacing) for v in train_volumes]
            return training.PatchSampler(grids, m.patch, recipe.seed)

        trained = training.train_or_load(net, path, sampler, recipe, classes,
                                         progress=f"train {m.key}")
        train_info = {**trained.to_dict(), "recipe": recipe.to_dict(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                      "budget": f"{recipe.core_minutes:g} core-minutes of CPU time"}
        print(f"{m.key}: {trained.steps} steps, loss {trained.final_loss:.3f}"
              f"{' (cached weights)' if trained.cached else ''}", file=sys.stderr)
        # the equal-budget comparison keeps the plain key; another budget is a row of its own
        # beside it (a longer run shows how far a network gets, it does not replace the row)
        other_budget = not a.quick and recipe.core_minutes != methods_mod.DEFAULT_CORE_MINUTES
        budget_key = f"|{recipe.core_minutes:g}cm" if other_budget else ""
        display = (f"{m.display}, {recipe.core_minutes:g} core-min" if other_budget
                   else m.display)
        calib = None
        for path_name in m.paths:
            eager_labels = None
            for rt_name in _ordered(methods_mod.runtimes_for(m.kind, a.runtimes, a.quick)):
                model = methods_mod.for_inference(m, net, path_name)
                rt = runtimes.get(rt_name)
                base = {"kind": "trained", "method": m.key, "path": path_name,
                        "display": display, "dataset": described, "training": train_info,
                        "tolerance_mm": a.tolerance, "network": m.network,
                        "core_minutes": recipe.core_minutes}
                rkey = f"trained|{ds.name}|{m.key}|{path_name}|{rt_name}{budget_key}"
                why = rt.unavailable_reason()
                if why:
                    save([record(rkey, m.display, rt_name, base, quick=a.quick,
                                 status="skipped", reason=why, precision=rt.precision)])
                    continue
                try:
                    example = methods_mod.example(m, train_volumes[0], classes)
                    options: dict[str, Any] = {}
                    if rt.precision == "int8":
                        if calib is None:
                            count = 2 if a.quick else methods_mod.CALIBRATION
                            calib = methods_mod.calibration(m, train_volumes, classes, count)
                        options = runtimes.accepted(rt_name, {"calibration_inputs": calib})
                    prepared = rt.prepare(model, example, threads, **options)
                    try:  # each runtime sets its own grad mode (compiled ones need no_grad)
                        scores, labels = run_method(m, path_name, rt_name, prepared.call,
                                                    plan.test_cases, ds, classes, a.tolerance,
                                                    eager_labels)
                    finally:
                        if prepared.cleanup:
                            prepared.cleanup()
                except Exception as exc:  # noqa: BLE001 - a failing runtime is a row
                    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    print(f"{m.key} {path_name} {rt_name}: failed: {reason}", file=sys.stderr)
                    save([record(rkey, m.display, rt_name, base, quick=a.quick,
                                 status="failed", reason=reason, precision=rt.precision)])
                    continue
                if rt_name == runtimes.REFERENCE:
                    eager_labels = labels
                save([record(rkey, m.display, rt_name, {**base, **scores}, quick=a.quick,
                             precision=rt.precision)])
                print(f"{m.key} {path_name} {rt_name}: Dice {scores['mean_dice']:.3f} "
                      f"NSD {scores['mean_nsd']:.3f}", file=sys.stderr)

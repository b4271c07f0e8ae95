"""A cell: one measurement, i.e. (model spec, runtime, input shape, threads) plus protocol."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from segbench import fields
from segbench.measure import Protocol
from segbench.models import ModelSpec


@dataclass
class Cell:
    benchmark: str
    model: ModelSpec
    runtime: str
    shape: tuple[int, ...]  # full input shape, batch first
    threads: int
    protocol: Protocol = field(default_factory=Protocol)
    submodules: tuple[str, ...] = ()  # attributes of the model also timed alone ("encoder",)
    fidelity: bool = True
    runtime_options: dict[str, Any] = field(default_factory=dict)
    # benchmark labels copied to the record; keys declared in segbench.fields (checked here,
    # before any work, and again when the record is saved)
    extra: dict[str, Any] = field(default_factory=dict)
    # what one timed call does beyond a forward pass on ``shape``, e.g.
    # {"kind": "sliding_window", "volume": [1, z, y, x], "patch": [...], "step": 0.5,
    #  "mirror": False}
    scenario: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        fields.check_names(self.extra, where=f"cell {self.model.label} | {self.runtime}")

    @property
    def batch(self) -> int:
        return self.shape[0]

    @property
    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.runtime_options.items()))
        tag = self.extra.get(fields.TAG, "")
        if self.scenario:
            tag += ",".join(f"{k}={v}" for k, v in sorted(self.scenario.items()))
        shape = "x".join(str(s) for s in self.shape)
        key = "|".join(p for p in (self.model.family, self.model.name, str(self.model.classes),
                                   self.runtime, opts, shape, f"t{self.threads}", tag))
        if self.model.options:  # another width or training recipe is another cell
            key += "|" + json.dumps(self.model.options, sort_keys=True, separators=(",", ":"))
        return key

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["submodules"] = list(self.submodules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        data = dict(data)
        data["model"] = ModelSpec.from_dict(data["model"])
        data["protocol"] = Protocol(**data["protocol"])
        data["shape"] = tuple(data["shape"])
        data["submodules"] = tuple(data["submodules"])
        return cls(**data)

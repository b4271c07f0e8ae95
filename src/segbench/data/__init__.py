"""Data the benchmarks can make offline: CT-like phantoms with labels.

Nothing may be downloaded at run time, yet a fidelity number on a network that learned nothing
says little; phantoms give networks something real to learn and an evaluation split to be
scored on.
"""

from segbench.data.dataset import PhantomDataset
from segbench.data.phantom import (
    PHANTOM_VERSION,
    SPLIT_BASES,
    WINDOWS,
    Atlas,
    Phantom,
    make_atlas,
    make_slice,
    make_volume,
    split_of,
    split_seed,
    to_input,
    window,
)

__all__ = [
    "PHANTOM_VERSION", "SPLIT_BASES", "WINDOWS", "Atlas", "Phantom", "PhantomDataset",
    "make_atlas", "make_slice", "make_volume", "split_of", "split_seed", "to_input", "window",
]

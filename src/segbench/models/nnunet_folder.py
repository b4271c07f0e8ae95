"""Family "nnunet-folder": a user's trained nnU-Net v2 model, built from its folder.

The model's name is the folder's absolute path; its options are ``fold``, ``configuration``
and ``checkpoint`` (file name inside ``fold_<F>``). The network is the one the plans name,
with the checkpoint's weights (not random: :func:`build` loads them), in eval mode. Reading
and checking the folder is :mod:`segbench.ownnet.nnunet_folder`'s.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from segbench.ownnet.nnunet_folder import CHECKPOINT, build_network, cached_folder


def folder_of(name: str, **options: Any):
    return cached_folder(name, str(options.get("fold", "0")),
                         str(options.get("configuration") or ""),
                         str(options.get("checkpoint") or CHECKPOINT))


class NnunetFolderFamily:
    """Inputs (N, 1, *patch), outputs (N, classes, *patch): the plans' 3D network."""

    dims = 3
    size_multiple = 1  # the plans' own patch always fits; other sizes are the plans' business
    trained_weights = True  # the weights are the checkpoint's

    def names(self) -> list[str]:
        return []  # any model folder

    def build(self, name: str, classes: int, **options: Any) -> nn.Module:
        folder = folder_of(name, **options)
        if classes != folder.classes:
            raise ValueError(f"{name}: the model has {folder.classes} outputs, asked for "
                             f"{classes}")
        return build_network(folder)

    def build_untrained(self, name: str, classes: int, **options: Any) -> nn.Module:
        """The structure without loading weights (the memory estimate builds it on meta)."""
        return build_network(folder_of(name, **options), weights=False)

    def describe(self, name: str, classes: int, **options: Any) -> dict[str, Any]:
        folder = folder_of(name, **options)
        return {"display": f"{folder.name} ({folder.describe()['architecture']}, "
                           f"{folder.configuration}, fold {folder.fold})",
                "nnunet_model": folder.describe(), "size_multiple": 1}


FAMILIES = {"nnunet-folder": NnunetFolderFamily()}

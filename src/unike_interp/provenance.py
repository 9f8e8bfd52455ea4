"""What produced a result: installed package versions (recorded in every build, run and HDF5 file)."""

from __future__ import annotations

from typing import Iterable

DEFAULT_PACKAGES = ("unike-interp", "torch", "transformers", "diffusers", "tokenizers", "numpy", "nnsight")


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """``{package: version}``; ``"absent"`` for one that is not installed."""
    import importlib.metadata as md

    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out

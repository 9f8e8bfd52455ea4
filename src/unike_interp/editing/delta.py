"""Edits as weight deltas: apply, remove (bit-exact), save and load without pickle.

A :class:`WeightDelta` maps module paths (``model.layers.1.mlp.down_proj``) to float32 tensors
``Delta`` with ``W_edited = W + Delta``. Applying it returns an :class:`AppliedDelta` that holds a
copy of every touched weight; :meth:`AppliedDelta.remove` writes those copies back, so the model
is restored bit for bit whatever the dtype (subtracting ``Delta`` again would not be exact).

On disk: ``<name>.safetensors`` (one tensor per module path) and ``<name>.json`` (the manifest:
model, modules, cases, editor, hyperparameters, protocol, shapes, versions).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

DELTA_FORMAT = "unike-delta/1"


class DeltaMismatchError(ValueError):
    """The delta does not fit the model it is applied to."""


@dataclass
class WeightDelta:
    """``{module path: Delta (out, in) float32}`` plus a JSON-serialisable manifest."""

    deltas: dict[str, torch.Tensor]
    manifest: dict = field(default_factory=dict)

    @property
    def modules(self) -> list[str]:
        return sorted(self.deltas)

    def sha256(self) -> str:
        """Content hash: module paths (sorted) and their float32 bytes; the manifest is not hashed."""
        import hashlib

        h = hashlib.sha256()
        for name in sorted(self.deltas):
            h.update(name.encode())
            h.update(self.deltas[name].detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def norms(self) -> dict[str, float]:
        return {k: float(v.float().norm()) for k, v in self.deltas.items()}

    def apply(self, lm: torch.nn.Module, *, check_model: str | None = None) -> "AppliedDelta":
        """Add every ``Delta`` to its module's weight (computed in float32, stored in the weight's dtype)."""
        if check_model is not None and self.manifest.get("model") not in (None, check_model):
            raise DeltaMismatchError(f"delta was made for model {self.manifest.get('model')!r}, not {check_model!r}")
        targets = {}
        for path, d in self.deltas.items():
            try:
                w = lm.get_submodule(path).weight
            except AttributeError:
                raise DeltaMismatchError(f"delta module {path!r} does not exist in this model") from None
            if tuple(w.shape) != tuple(d.shape):
                raise DeltaMismatchError(f"delta for {path!r} has shape {tuple(d.shape)}, the weight {tuple(w.shape)}")
            targets[path] = w
        backup = {p: w.detach().clone() for p, w in targets.items()}
        with torch.no_grad():
            for p, w in targets.items():
                w.copy_((w.float() + self.deltas[p].to(w.device, torch.float32)).to(w.dtype))
        return AppliedDelta(lm, backup)

    def save(self, path: str | Path) -> Path:
        """Write ``path.safetensors`` and ``path.json`` (atomically); returns the safetensors path."""
        from safetensors.torch import save_file

        path = Path(path)
        base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
        base.parent.mkdir(parents=True, exist_ok=True)
        st, js = base.with_suffix(".safetensors"), base.with_suffix(".json")
        manifest = {
            **self.manifest,
            "format": DELTA_FORMAT,
            "modules": {k: list(v.shape) for k, v in sorted(self.deltas.items())},
        }
        tmp = st.with_suffix(f".tmp{os.getpid()}")
        tmpj = js.with_suffix(f".tmp{os.getpid()}")
        try:
            save_file({k: v.detach().float().cpu().contiguous() for k, v in self.deltas.items()}, str(tmp),
                      metadata={"format": DELTA_FORMAT})
            os.replace(tmp, st)
            tmpj.write_text(json.dumps(manifest, indent=1, sort_keys=True))
            os.replace(tmpj, js)
        except BaseException:  # a full disk: no half-written file left behind
            tmp.unlink(missing_ok=True)
            tmpj.unlink(missing_ok=True)
            raise
        return st

    @classmethod
    def load(cls, path: str | Path) -> "WeightDelta":
        """Read a delta written by :meth:`save` (safetensors + JSON only; nothing is unpickled)."""
        from safetensors.torch import load_file

        path = Path(path)
        base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
        st, js = base.with_suffix(".safetensors"), base.with_suffix(".json")
        for f in (st, js):
            if not f.exists():
                raise FileNotFoundError(f"delta file {f} is missing (a delta is a .safetensors + .json pair)")
        try:
            manifest = json.loads(js.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{js}: not valid JSON ({e})") from None
        if manifest.get("format") != DELTA_FORMAT:
            raise ValueError(f"{js}: format {manifest.get('format')!r}, expected {DELTA_FORMAT!r}")
        deltas = load_file(str(st))
        listed = set(manifest.get("modules", {}))
        if listed != set(deltas):
            raise ValueError(f"{st}: tensors {sorted(deltas)} do not match the manifest's modules {sorted(listed)}")
        return cls(deltas, manifest)


@dataclass
class AppliedDelta:
    """Handle of an applied delta; :meth:`remove` restores the original weights exactly."""

    lm: torch.nn.Module
    backup: dict[str, torch.Tensor]
    removed: bool = False

    def remove(self) -> None:
        if self.removed:
            return
        with torch.no_grad():
            for p, w0 in self.backup.items():
                self.lm.get_submodule(p).weight.copy_(w0)
        self.removed = True

    def __enter__(self) -> "AppliedDelta":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class WeightSnapshot:
    """Copies of some modules' weights, to diff against (the delta) and to restore exactly."""

    def __init__(self, lm: torch.nn.Module, paths=(), *, saved: dict[str, torch.Tensor] | None = None):
        """Copy the weights of ``paths``, or adopt copies already made (``saved``, e.g. an applied edit's backup)."""
        self.lm = lm
        self.saved = dict(saved) if saved is not None else {p: lm.get_submodule(p).weight.detach().clone() for p in paths}

    def delta(self) -> dict[str, torch.Tensor]:
        return {p: (self.lm.get_submodule(p).weight.detach().float() - w0.float()).cpu() for p, w0 in self.saved.items()}

    def restore(self) -> None:
        with torch.no_grad():
            for p, w0 in self.saved.items():
                self.lm.get_submodule(p).weight.copy_(w0)

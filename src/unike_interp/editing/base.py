"""The editor interface, the guards every update passes, and the editor registry.

An :class:`Editor` turns a list of :class:`EditRequest` into a :class:`WeightDelta` on the
adapter's language model. :meth:`Editor.edit` leaves the edit applied and returns the handle that
removes it bit for bit; if anything fails (a guard, an exception, an interrupt) the model is
restored before the error propagates.

Guards: every per-layer update must be finite and satisfy ``|Delta|_F / |W|_F <= max_rel_update``;
otherwise :class:`EditGuardError` names the case(s) and the layer.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch

from .delta import AppliedDelta, WeightDelta, WeightSnapshot
from .hparams import EditHParams, hparams_dict, make_hparams
from .requests import EditRequest
from .stats import StatsCache, layer_second_moments


class EditGuardError(RuntimeError):
    """An update was non-finite or too large; the model has been restored."""

    def __init__(self, message: str, *, cases: Sequence[str], layer: int | None):
        super().__init__(message)
        self.cases = list(cases)
        self.layer = layer


def _cases_text(requests: Sequence[EditRequest]) -> str:
    ids = [r.case_id for r in requests]
    return ids[0] if len(ids) == 1 else f"{len(ids)} cases ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"


@dataclass
class EditResult:
    """What :meth:`Editor.edit` returns: the applied handle, the delta and per-edit diagnostics."""

    applied: AppliedDelta
    delta: WeightDelta
    seconds: float
    info: dict

    def remove(self) -> None:
        self.applied.remove()


class Editor(ABC):
    """Base class: hyperparameters, layers from the adapter, statistics, guards."""

    name: str = "editor"
    #: Whether the editor takes the conditioning objective (``modality_aware=true``, editing/modality.py).
    supports_modality: bool = False
    #: The protocol a run uses when none is given (the one the method was published for).
    protocol: str = "batch"
    #: Whether the method edits one fact at a time (given a batch, it applies its requests one after another).
    one_fact_at_a_time: bool = False

    def __init__(self, hparams: EditHParams | None = None, *, stats_cache: StatsCache | None = None,
                 stats_corpus: Sequence[str] | None = None, progress: bool = False):
        self.hp = hparams if hparams is not None else make_hparams(self.name)
        if self.hp.modality_aware and not self.supports_modality:
            raise ValueError(f"{self.name}: modality_aware=true is supported by memit, pmet and alphaedit (their "
                             f"update solves for many key/value rows at once); {self.name} does not take it")
        self.cache = stats_cache
        self.stats_corpus = stats_corpus
        self.progress = progress
        self._prefix_cache: dict = {}

    # --- where to edit ----------------------------------------------------------------------
    def layers(self, adapter) -> list[int]:
        layers = self.hp.layers if self.hp.layers is not None else adapter.edit_layers
        n = adapter.num_layers
        bad = [l for l in layers if l >= n]
        if bad:
            raise ValueError(f"{self.name}: layers {bad} do not exist ({adapter.name} has {n} layers)")
        return list(layers)

    def cond_layers(self, adapter) -> list[int]:
        """The layers the conditioning objective updates (``[]`` unless ``modality_aware``)."""
        if not self.hp.modality_aware:
            return []
        layers = self.hp.cond_layers if self.hp.cond_layers is not None else self.layers(adapter)
        bad = [l for l in layers if l >= adapter.num_layers]
        if bad:
            raise ValueError(f"{self.name}: cond_layers {bad} do not exist ({adapter.name} has {adapter.num_layers} layers)")
        return list(layers)

    def all_layers(self, adapter) -> list[int]:
        """Every layer an edit writes: the text layers and the conditioning layers."""
        return sorted(set(self.layers(adapter)) | set(self.cond_layers(adapter)))

    def template(self, adapter) -> str:
        return self.hp.module_template or adapter.edit_module_template

    def module_path(self, adapter, layer: int) -> str:
        return self.template(adapter).format(layer)

    # --- shared pieces ------------------------------------------------------------------------
    def prefixes(self, adapter) -> list[str]:
        from .contexts import context_prefixes

        key = (id(adapter.lm), self.hp.n_prefixes, self.hp.prefix_tokens, self.hp.seed)
        if key not in self._prefix_cache:
            self._prefix_cache[key] = context_prefixes(adapter, self.hp.n_prefixes, self.hp.prefix_tokens, self.hp.seed)
        return self._prefix_cache[key]

    def corpus(self, adapter) -> list[str]:
        if self.stats_corpus is not None:
            return list(self.stats_corpus)
        texts = adapter.default_stats_corpus()
        if texts is None:
            raise ValueError(f"{adapter.name}: no default statistics corpus; pass stats_corpus (texts) or --stats-corpus PATH")
        return texts

    def second_moments(self, adapter, layers) -> dict[int, tuple[torch.Tensor, dict]]:
        """``{layer: (C (d_in, d_in) float32 on the adapter's device, its cache key fields)}``; the
        layers not cached yet are computed in one pass over the corpus."""
        res = layer_second_moments(adapter, list(layers), texts=self.corpus(adapter), samples=self.hp.stats_samples,
                                   dtype=self.hp.stats_dtype, cache=self.cache,
                                   module_template=self.template(adapter), progress=self.progress)
        return {l: (C.to(adapter.device, torch.float32), meta) for l, (C, meta) in res.items()}

    def second_moment(self, adapter, layer: int) -> tuple[torch.Tensor, dict]:
        """``C`` of one layer and its cache key fields (:meth:`second_moments`)."""
        return self.second_moments(adapter, [layer])[layer]

    def prepare(self, adapter) -> None:
        """Compute (or load) whatever depends only on the unedited model (statistics, projectors),
        once per model: later calls, e.g. for the second batch of a sequence (the model now edited),
        reuse it. :meth:`reset` forgets it (a new sequence, or another model)."""
        if getattr(self, "_prepared_for", None) != id(adapter.lm):
            self._prepare(adapter)
            self._prepared_for = id(adapter.lm)

    def _prepare(self, adapter) -> None:
        """Editor-specific part of :meth:`prepare`."""

    def reset(self) -> None:
        """Forget prepared statistics and any state carried between edits of a sequence."""
        self._prepared_for = None

    def new_sequence(self) -> None:
        """Forget state carried between the edits of one sequence (AlphaEdit's earlier keys), keep
        the statistics: the next edit starts from the unedited model again."""

    def apply_update(self, adapter, layer: int, update: torch.Tensor, requests: Sequence[EditRequest]) -> None:
        """Guard ``update`` (``(out, in)``, float32) and add it to layer ``layer``'s edited weight."""
        path = self.module_path(adapter, layer)
        w = adapter.module(path).weight
        if not torch.isfinite(update).all():
            raise EditGuardError(f"{self.name}: non-finite update for {_cases_text(requests)} at layer {layer} ({path})",
                                 cases=[r.case_id for r in requests], layer=layer)
        rel = float(update.norm() / w.detach().float().norm().clamp(min=1e-12))
        if self.hp.max_rel_update is not None and rel > self.hp.max_rel_update:
            raise EditGuardError(
                f"{self.name}: update for {_cases_text(requests)} at layer {layer} ({path}) has relative norm "
                f"{rel:.3g} > max_rel_update={self.hp.max_rel_update}; lower the learning rate / raise the "
                f"preservation weight, or raise max_rel_update",
                cases=[r.case_id for r in requests], layer=layer)
        with torch.no_grad():
            w.copy_((w.float() + update.to(w.device)).to(w.dtype))

    # --- the algorithm ------------------------------------------------------------------------
    @abstractmethod
    def _edit(self, adapter, requests: Sequence[EditRequest]) -> dict:
        """Apply the edit to ``adapter.lm`` in place (through :meth:`apply_update`); return diagnostics."""

    def edited_modules(self, adapter) -> list[str]:
        return [self.module_path(adapter, l) for l in self.all_layers(adapter)]

    def edit(self, adapter, requests: Sequence[EditRequest]) -> EditResult:
        """Edit ``adapter.lm`` for ``requests`` at once; the model is restored if anything fails."""
        if not requests:
            raise ValueError(f"{self.name}: no requests")
        self.prepare(adapter)
        snap = WeightSnapshot(adapter.lm, self.edited_modules(adapter))
        t0 = time.perf_counter()
        try:
            info = self._edit(adapter, list(requests))
            for path, d in snap.delta().items():
                if not torch.isfinite(d).all():
                    raise EditGuardError(f"{self.name}: non-finite weights in {path} after editing {_cases_text(requests)}",
                                         cases=[r.case_id for r in requests], layer=None)
        except BaseException:
            snap.restore()
            raise
        if adapter.device.type == "cuda":
            torch.cuda.synchronize(adapter.device)
        seconds = time.perf_counter() - t0
        delta = WeightDelta(snap.delta(), {
            "model": adapter.name,
            "editor": self.name,
            "hparams": hparams_dict(self.hp),
            "cases": [r.case_id for r in requests],
            "requests": [r.__dict__ for r in requests],
            "dtype": str(adapter.dtype).replace("torch.", ""),
        })
        applied = AppliedDelta(adapter.lm, snap.saved)
        return EditResult(applied, delta, seconds, info)

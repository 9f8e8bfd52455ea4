"""ROME — Meng, Bau, Andonian, Belinkov, "Locating and Editing Factual Associations in GPT",
NeurIPS 2022.

A rank-one update of one MLP output projection ``W`` (``(d_out, d_in)``) at layer ``l``:

    k* = mean over prefixes of the module's input at the subject's last token      (eq. 3)
    v* = W k* + d,  d optimised so that the prompt yields target_new               (eq. 4, targets.py)
    W' = W + (v* - W k*) (C^-1 k*)^T / (k*^T C^-1 k*)                              (eq. 2)

with ``C = E[k k^T]`` the layer's key second moment. ``W' k* = v*`` exactly, and among all such
``W'`` this one changes the outputs of other keys least in the metric ``C``. Several requests are
applied one after another (ROME is a single-fact method).
"""

from __future__ import annotations

import torch

from .base import Editor
from .stats import cached_inverse
from .targets import mean_at_subject, optimize_targets


class ROME(Editor):
    name = "rome"
    protocol = "single"
    one_fact_at_a_time = True

    def layers(self, adapter) -> list[int]:
        if self.hp.layer is not None:
            layer = self.hp.layer
        elif self.hp.layers:
            layer = self.hp.layers[0]
        else:
            layer = adapter.rome_layer
        if layer >= adapter.num_layers:
            raise ValueError(f"rome: layer {layer} does not exist ({adapter.name} has {adapter.num_layers} layers)")
        return [layer]

    def _prepare(self, adapter) -> None:
        layer = self.layers(adapter)[0]
        C, meta = self.second_moment(adapter, layer)
        self._Cinv = cached_inverse(C.cpu(), meta, cache=self.cache).to(adapter.device, torch.float32)

    def _edit(self, adapter, requests) -> dict:
        layer = self.layers(adapter)[0]
        path = self.module_path(adapter, layer)
        prefixes = self.prefixes(adapter)
        nll = []
        for r in requests:
            k = mean_at_subject(adapter, [r], prefixes, path, what="input")[0].to(adapter.device)
            t = optimize_targets(adapter, [r], [path], prefixes, self.hp)
            W = adapter.module(path).weight.detach().float()
            v_star = t.target(path)[0].to(adapter.device)
            u = self._Cinv @ k
            update = torch.outer(v_star - W @ k, u) / (u @ k)
            self.apply_update(adapter, layer, update, [r])
            nll.append(float(t.target_nll[0]))
        return {"layers": [layer], "target_nll": nll}

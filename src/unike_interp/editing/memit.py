"""MEMIT — Meng, Sen Sharma, Andonian, Belinkov, Bau, "Mass-Editing Memory in a Transformer",
ICLR 2023.

For requests ``i = 1..n`` and critical layers ``l_1 < ... < l_L = L`` (the adapter's edit layers):

    z_i = h_i^L + d_i          target residual-stream output of layer L at the subject's last
                               token, d_i optimised as in ROME (eq. 16, targets.py)
    for l in l_1..l_L:
        K = [k_i^l]            keys (module inputs) at layer l, mean over prefixes  (n, d_in)
        R = [(z_i - h_i^L) / (L - l + 1)]   remaining residual, spread over the layers left  (n, d_out)
        Delta_l = R^T K (lambda C_l + K^T K)^-1                                        (eq. 14)
        W_l += Delta_l

``h_i^L`` is recomputed after each layer's update, and ``C_l = E[k k^T]`` with weight ``lambda``
(``mom2_update_weight``) preserves the keys seen in the statistics corpus.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .base import Editor
from .modality import build_objective
from .targets import Targets, mean_at_subject, optimize_targets


def ridge_update(R: torch.Tensor, K: torch.Tensor, C: torch.Tensor, lam: float) -> torch.Tensor:
    """``Delta = R^T K (lam C + K^T K)^-1`` for ``R`` ``(n, d_out)``, ``K`` ``(n, d_in)``: ``(d_out, d_in)``."""
    A = lam * C.double() + K.double().T @ K.double()
    # A is symmetric: solve A X = K^T R  ->  Delta = X^T
    X = torch.linalg.solve(A, K.double().T @ R.double())
    return X.T.float()


class Objectives(NamedTuple):
    """What one edit solves for: the text layers, prefixes, target site and targets ``z`` ``(R, D)``
    (``targets``: their optimisation), and the conditioning objective (None for the plain editor)."""

    layers: list[int]
    prefixes: list[str]
    site: str
    z: torch.Tensor
    targets: Targets
    cond: object | None


class MEMIT(Editor):
    name = "memit"
    spread = "linear"
    supports_modality = True

    def target_sites(self, adapter, last: int) -> tuple[list[str], str]:
        """Sites whose outputs are optimised, and the one whose target the update distributes."""
        site = adapter.paths.layer.format(last)
        return [site], site

    def residual_scale(self, remaining: int) -> float:
        return 1.0 / remaining

    def _prepare(self, adapter) -> None:
        self._C = {l: C for l, (C, _) in self.second_moments(adapter, self.all_layers(adapter)).items()}

    def objectives(self, adapter, requests) -> Objectives:
        """The text targets (and, with ``modality_aware``, the conditioning objective, optimised)."""
        layers = self.layers(adapter)
        prefixes = self.prefixes(adapter)
        sites, site = self.target_sites(adapter, layers[-1])
        t = optimize_targets(adapter, requests, sites, prefixes, self.hp)
        z = t.target(site).to(adapter.device)
        cond = None
        if self.hp.modality_aware:
            cl = self.cond_layers(adapter)
            cond = build_objective(adapter, requests, self.hp, cl,
                                   self.corpus(adapter) if self.hp.cond_preserve else None)
            cond.optimize(adapter.paths.layer.format(cl[-1]))
        return Objectives(layers, prefixes, site, z, t, cond)

    def layer_rows(self, adapter, l: int, requests, objectives: Objectives) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K, R)`` of layer ``l``'s update: the text rows (if ``l`` is a text layer) and the
        conditioning rows (if it is a conditioning layer), the model as it is now."""
        layers, prefixes, site, z, _, cond = objectives
        path = self.module_path(adapter, l)
        Ks, Rs = [], []
        if l in layers:
            K = mean_at_subject(adapter, requests, prefixes, path, what="input").to(adapter.device)
            cur = mean_at_subject(adapter, requests, prefixes, site, what="output").to(adapter.device)
            Ks.append(K)
            Rs.append((z - cur) * self.residual_scale(sum(x >= l for x in layers)))
        if cond is not None and l in cond.layers:
            Kc, Rc = cond.rows(path, adapter.paths.layer.format(cond.layers[-1]), sum(x >= l for x in cond.layers))
            Ks.append(Kc)
            Rs.append(Rc)
        return torch.cat(Ks), torch.cat(Rs)

    def _edit(self, adapter, requests) -> dict:
        obj = self.objectives(adapter, requests)
        for l in self.all_layers(adapter):
            K, R = self.layer_rows(adapter, l, requests, obj)
            update = ridge_update(R, K, self._C[l], self.hp.mom2_update_weight)
            self.apply_update(adapter, l, update, requests)
        return self.edit_info(adapter, obj)

    def edit_info(self, adapter, obj: Objectives) -> dict:
        """The diagnostics :meth:`_edit` returns (after the update: the conditioning objective's
        ``cond_target_reached`` reads the edited model)."""
        info = {"layers": self.all_layers(adapter), "target_nll": obj.targets.target_nll.tolist(),
                "target_steps": obj.targets.steps}
        if obj.cond is not None:
            info.update({**obj.cond.info, "cond_target_reached": round(obj.cond.reached(), 4)})
        return info

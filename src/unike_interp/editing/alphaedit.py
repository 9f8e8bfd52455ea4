"""AlphaEdit — Fang, Jiang, Wang, Ma, Shi, Wang, He, Chua, "AlphaEdit: Null-Space Constrained
Knowledge Editing for Language Models", ICLR 2025.

MEMIT's targets and residual spread, but every update is projected onto the null space of the
preserved keys, so that ``Delta K_0 ~ 0`` for the keys of the statistics corpus:

    P = U_0 U_0^T,  U_0 = eigenvectors of C_l = E[k k^T] with eigenvalue < threshold
    Delta_l = R^T K (P (K_p^T K_p + K^T K) + alpha I)^-1 P                          (eq. 10)

``K_p`` are the keys of earlier edits in a sequence (AlphaEdit accumulates them so later batches do
not undo earlier ones; call ``editor.new_sequence()`` to start a new one, e.g. after removing the
edits); ``alpha`` is ``l2``. By the push-through identity this equals the paper's
``R K^T P (K_p K_p^T P + K K^T P + alpha I)^-1`` with keys as columns.
"""

from __future__ import annotations

import torch

from .memit import MEMIT
from .stats import cached_nullspace_projector


class AlphaEdit(MEMIT):
    name = "alphaedit"
    protocol = "sequential"

    def _prepare(self, adapter) -> None:
        # the projector belongs to the unedited model; K_p grows with the edits of a sequence
        self._P, self._Kp = {}, {}
        for l, (C, meta) in self.second_moments(adapter, self.all_layers(adapter)).items():
            P = cached_nullspace_projector(C.cpu(), meta, self.hp.nullspace_threshold, self.hp.nullspace_relative,
                                           cache=self.cache)
            self._P[l] = P.to(adapter.device, torch.float32)
            self._Kp[l] = torch.zeros_like(C)

    def new_sequence(self) -> None:
        for l in getattr(self, "_Kp", {}):
            self._Kp[l] = torch.zeros_like(self._Kp[l])

    def nullspace_dims(self) -> dict[int, int]:
        return {l: int(round(float(P.trace()))) for l, P in self._P.items()}

    def _edit(self, adapter, requests) -> dict:
        obj = self.objectives(adapter, requests)
        for l in self.all_layers(adapter):
            K, R = self.layer_rows(adapter, l, requests, obj)
            P = self._P[l].double()
            M = self._Kp[l].double() + K.double().T @ K.double()
            A = P @ M + self.hp.l2 * torch.eye(P.shape[0], dtype=torch.float64, device=P.device)
            update = (R.double().T @ K.double() @ torch.linalg.solve(A, P)).float()
            self.apply_update(adapter, l, update, requests)
            self._Kp[l] = self._Kp[l] + K.T @ K
        return {**self.edit_info(adapter, obj), "nullspace_dims": self.nullspace_dims()}

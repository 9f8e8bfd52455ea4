"""FT — constrained fine-tuning, after Zhu, Rawat, Zaheer, Bhojanapalli, Li, Yu, Kumar, "Modifying
Memories in Transformer Models", 2020.

Adam on the edited modules' weights only (the adapter's edit layers), minimising the mean target
NLL of the requests' prompts, with the change projected back into the box
``|W - W_0|_inf <= norm_constraint`` after every step (the paper's L-infinity constraint).
"""

from __future__ import annotations

import torch

from .base import Editor
from .batching import make_batch, target_count, target_logprob


class FT(Editor):
    name = "ft"
    protocol = "single"

    def _edit(self, adapter, requests) -> dict:
        lm = adapter.lm
        paths = self.edited_modules(adapter)
        weights = [adapter.module(p).weight for p in paths]
        w0 = [w.detach().clone() for w in weights]
        batch = make_batch(adapter.tokenizer, [r.prompt for r in requests], [r.subject for r in requests],
                           [r.target_new for r in requests]).to(adapter.device)
        ntok = target_count(batch.target_ids).clamp(min=1).float()
        req_grad = [p.requires_grad for p in lm.parameters()]
        for p in lm.parameters():
            p.requires_grad_(False)
        params = []
        for w in weights:
            w.requires_grad_(True)
            params.append(w)
        opt = torch.optim.Adam(params, lr=self.hp.ft_lr)
        was_training = lm.training
        lm.eval()
        losses = []
        try:
            for _ in range(self.hp.ft_steps):
                logits = lm(**batch.model_inputs()).logits
                loss = (-target_logprob(logits, batch.target_ids) / ntok).mean()
                losses.append(float(loss.detach()))
                if losses[-1] < self.hp.v_stop_loss:
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
                if self.hp.norm_constraint is not None:
                    eps = self.hp.norm_constraint
                    with torch.no_grad():
                        for w, w_0 in zip(weights, w0):
                            w.copy_(torch.clamp(w, w_0 - eps, w_0 + eps))
        finally:
            for p, g in zip(lm.parameters(), req_grad):
                p.requires_grad_(g)
            lm.train(was_training)
        # guard the accumulated change per layer (same rule as the closed-form editors)
        for l, (p, w, w_0) in zip(self.layers(adapter), zip(paths, weights, w0)):
            update = (w.detach().float() - w_0.float())
            with torch.no_grad():
                w.copy_(w_0)
            self.apply_update(adapter, l, update, requests)
        return {"layers": self.layers(adapter), "loss": losses}

"""The three conditioning pathways of the SynthWorld UMM.

Each pathway turns a batch of prompts into the tensor the image generator cross-attends to, and
says which language-model token positions survive into it. They mirror the UniKE study's models:

``direct`` (OmniGen2-like)
    ``c = h_L[:, :T]`` -- the language model's last hidden states (after its final norm) over the
    prompt tokens. Shape ``(B, T, H)``; conditioning position ``j`` is LM position ``j``.
``queries`` (BLIP3o-like)
    ``K`` learned query embeddings are appended after the prompt's token embeddings and run
    through the frozen language model; ``c = h_L[:, T:T+K]``. Shape ``(B, K, H)``; conditioning
    position ``k`` is LM position ``T + k``. The queries are trained with the generator.
``bottleneck`` (Ovis-U1-like)
    ``c = W [h_L ; norm(h_{L-1})]`` -- the last two hidden layers concatenated and projected by a
    linear map ``W: 2H -> D`` (``D < H``), trained with the generator and then frozen. Shape
    ``(B, T, D)``. ``h_L`` (``hidden_states[-1]``) has passed the LM's final norm; the same norm
    is applied to ``h_{L-1}`` so both halves share a scale. Measured without it: the raw residual
    stream carries a massive activation on the first token (norm 293 against 41 for ``h_L``),
    which swamped the projection, and the generator drew every prompt alike.

Prompts are left-padded; position ids are computed from the attention mask so a prompt gives the
same conditioning alone and in a batch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..conditioning import Conditioning, position_ids_from_mask  # noqa: F401  (re-exported)

PATHWAYS = ("direct", "queries", "bottleneck")


class ConditionEncoder(nn.Module):
    """Pathway-specific parameters and the function ``prompts -> Conditioning``.

    The language model is passed to :meth:`forward`, not owned, so that an edit of its weights
    reaches the conditioning with no copy.
    """

    def __init__(self, pathway: str, hidden_size: int, num_queries: int = 8, bottleneck_dim: int = 64):
        super().__init__()
        if pathway not in PATHWAYS:
            raise ValueError(f"unknown pathway {pathway!r}; expected one of {', '.join(PATHWAYS)}")
        self.pathway = pathway
        self.hidden_size = hidden_size
        self.num_queries = num_queries if pathway == "queries" else 0
        self.bottleneck_dim = bottleneck_dim if pathway == "bottleneck" else 0
        if pathway == "queries":
            self.queries = nn.Parameter(torch.randn(num_queries, hidden_size) * 0.02)
        if pathway == "bottleneck":
            self.proj = nn.Linear(2 * hidden_size, bottleneck_dim)

    @property
    def out_dim(self) -> int:
        return self.bottleneck_dim if self.pathway == "bottleneck" else self.hidden_size

    def config(self) -> dict:
        return {
            "pathway": self.pathway,
            "hidden_size": self.hidden_size,
            "num_queries": self.num_queries or 8,
            "bottleneck_dim": self.bottleneck_dim or 64,
        }

    def forward(self, lm, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Conditioning:
        """``lm``: a ``*ForCausalLM`` whose ``.model`` is the decoder; ids/mask ``(B, T)``, left-padded."""
        base = lm.model
        B, T = input_ids.shape
        if self.pathway == "queries":
            emb = base.get_input_embeddings()(input_ids)
            q = self.queries.to(emb.dtype).unsqueeze(0).expand(B, -1, -1)
            embeds = torch.cat([emb, q], dim=1)
            mask = torch.cat([attention_mask, attention_mask.new_ones(B, self.num_queries)], dim=1)
            out = base(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids_from_mask(mask))
            hidden = out.last_hidden_state[:, T:]
            cmask = attention_mask.new_ones(B, self.num_queries)
            pos = torch.arange(T, T + self.num_queries, device=input_ids.device).expand(B, -1)
            return Conditioning(hidden, cmask, pos)
        hidden = self.head(self.lm_features(lm, input_ids, attention_mask))
        pos = torch.arange(T, device=input_ids.device).expand(B, -1).masked_fill(attention_mask == 0, -1)
        return Conditioning(hidden, attention_mask, pos)

    def lm_features(self, lm, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What the frozen LM hands over before the trainable head (``direct``, ``bottleneck``).

        ``direct``: ``h_L`` ``(B, T, H)``; ``bottleneck``: ``[h_L ; norm(h_{L-1})]`` ``(B, T, 2H)``.
        """
        if self.pathway == "queries":
            raise ValueError("the queries pathway has no frozen features: its queries run through the LM")
        base = lm.model
        out = base(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            output_hidden_states=self.pathway == "bottleneck",
        )
        if self.pathway == "bottleneck":
            hs = out.hidden_states
            return torch.cat([hs[-1], base.norm(hs[-2])], dim=-1)
        return out.last_hidden_state

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The pathway's trainable map from LM features to the conditioning (identity for ``direct``)."""
        if self.pathway == "bottleneck":
            return self.proj(features.to(self.proj.weight.dtype))
        return features

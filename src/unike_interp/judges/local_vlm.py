"""A VQA judge run in-process by a local transformers image-text-to-text model.

The model sees one image with the text of :func:`.prompting.build_judge_prompt`, generates
greedily up to ``max_new_tokens`` new tokens, and the decoded new tokens are read with
:func:`.prompting.parse_judge_reply`. A reply that does not parse becomes a ``Verdict`` with
``verdict=None`` and ``error`` naming the problem (with an excerpt of the reply); nothing is guessed.

Errors raised by the model itself (a processor/model mismatch, out of memory) propagate: they are
set-up faults that would hit every image alike, not judgements of one image.

Prompt construction: the processor's chat template when it has one, with a user turn of
``[{"type": "image"}, {"type": "text", "text": prompt}]``; otherwise a plain
``"<image token>\\n<prompt>\\n"`` with the image placeholder the processor declares
(``processor.image_token``, default ``"<image>"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..data.schema import Record
from ..devices import resolve_device, resolve_dtype
from .base import Judge, Verdict
from .prompting import JudgeItem, JudgeReplyError, judge_items, parse_judge_reply


class LocalVLMJudge(Judge):
    """``LocalVLMJudge(model, processor, device=..., dtype=None, max_new_tokens=128)``.

    ``model``: a loaded image-text-to-text model (moved to ``device``, and cast to ``dtype`` when
    given); ``processor``: its ``AutoProcessor``. ``stats`` counts generations and error verdicts.
    """

    name = "vlm"

    def __init__(
        self,
        model,
        processor,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        max_new_tokens: int = 128,
    ):
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        self.device = resolve_device(device)
        if dtype is None:
            self.model = model.to(self.device)
        else:
            self.model = model.to(device=self.device, dtype=resolve_dtype(dtype))
        self.model.eval()
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.stats = {"generations": 0, "errors": 0}

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = torch.float32,
        max_new_tokens: int = 128,
    ) -> "LocalVLMJudge":
        """Load model and processor from a local directory (never from a hub: ``local_files_only``)."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"LocalVLMJudge loads from a local model directory; {str(path)!r} is not one "
                "(download the model first and pass its folder)"
            )
        from transformers import AutoModelForImageTextToText, AutoProcessor

        # transformers renamed `torch_dtype` to `dtype` in 4.56; older releases ignore `dtype`.
        dtype_kw = "dtype" if _transformers_at_least(4, 56) else "torch_dtype"
        model = AutoModelForImageTextToText.from_pretrained(
            path, local_files_only=True, **{dtype_kw: resolve_dtype(dtype)}
        )
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        return cls(model, processor, device=device, max_new_tokens=max_new_tokens)

    def __repr__(self) -> str:
        return (f"LocalVLMJudge({type(self.model).__name__}, device={self.device}, "
                f"max_new_tokens={self.max_new_tokens})")

    # -- judging -----------------------------------------------------------------------------
    def judge_batch(
        self, images: np.ndarray, cases: Sequence[Record], stages: Sequence[str], targets: Sequence[str] | None = None
    ) -> list[Verdict]:
        # One image per generate call: prompts differ in length, and batching would need
        # per-processor padding-side handling that is easy to get silently wrong.
        return [self._judge_one(item) for item in judge_items(images, cases, stages, targets)]

    def _judge_one(self, item: JudgeItem) -> Verdict:
        reply = self.generate_reply(item.image, item.prompt)
        try:
            parsed = parse_judge_reply(reply)
        except JudgeReplyError as exc:
            self.stats["errors"] += 1
            return Verdict(None, None, None, item.target, error=f"vlm judge reply rejected: {exc}")
        return Verdict(
            verdict=parsed["matches_target"],
            predicted=parsed["observation"],
            confidence=parsed["confidence"],
            target=item.target,
            explanation=parsed["explanation"],
        )

    def prompt_text(self, prompt: str) -> str:
        """The full model input text for ``prompt``, with the image placeholder in it."""
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image_token = getattr(self.processor, "image_token", None) or "<image>"
        return f"{image_token}\n{prompt}\n"

    @torch.no_grad()
    def generate_reply(self, image: np.ndarray, prompt: str) -> str:
        """Greedy reply of the model to ``image`` + ``prompt`` (new tokens only, special tokens dropped)."""
        inputs = self.processor(images=[Image.fromarray(image)], text=[self.prompt_text(prompt)], return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        # Floating inputs (pixel values) follow the model's dtype; ids and masks keep theirs.
        inputs = {
            k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)) if torch.is_tensor(v) else v
            for k, v in inputs.items()
        }
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        self.stats["generations"] += 1
        # Decoder-only models echo the prompt; encoder-decoder models return only new tokens.
        if not getattr(self.model.config, "is_encoder_decoder", False):
            out = out[:, inputs["input_ids"].shape[1] :]
        return self._decode(out[0])

    def _decode(self, token_ids: torch.Tensor) -> str:
        decoder = self.processor if hasattr(self.processor, "decode") else self.processor.tokenizer
        return decoder.decode(token_ids, skip_special_tokens=True)


def _transformers_at_least(major: int, minor: int) -> bool:
    import transformers

    parts = transformers.__version__.split(".")
    return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (major, minor)

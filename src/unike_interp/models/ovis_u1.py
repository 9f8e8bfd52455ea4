"""Adapter for Ovis-U1 (AIDC-AI) over a local checkpoint folder whose own model code the user trusts.

Ovis-U1's model code is not published outside its checkpoint (the GitHub repository AIDC-AI/Ovis-U1
holds only test scripts); it ships as Python files in the checkpoint folder and runs when the
model loads (transformers' ``trust_remote_code``). This adapter therefore never runs it unless the
user says so: ``load_model("ovis_u1:/path", trust_remote_code=True)`` / ``unike bench --model
ovis_u1:/path --trust-remote-code``; without it, :class:`RemoteCodeRefused` names the flag.

What the adapter calls, and nothing else (the interface of the public ``test_txt_to_img.py``):
``get_text_tokenizer()``, ``get_visual_tokenizer()`` (``smart_resize``, ``image_processor.min_pixels``),
``visual_generator.process_image_aspectratio(image, (W, H))``, ``preprocess_inputs(text, [image],
generation_preface=None, return_labels=False, propagate_exception=False, multimodal_type=
"single_image", fix_sample_overall_length_navit=False)`` -> ``(prompt, input_ids, pixel_values,
grid_thws)``, ``generate_condition(input_ids, pixel_values=, attention_mask=, grid_thws=, **gen_kwargs)``
-> a dict, ``generate_img(cond=, no_both_cond=, no_txt_cond=None, **gen_kwargs)`` -> images; and,
from the Ovis family's module tree, ``model.llm`` (the causal LM: answers text, is edited at
``model.layers.{i}.mlp.down_proj``).

Text-to-image as the script does it: a blank white image of the target size, the prompt
``"<image>\\nDescribe the image by detailing ...:" + prompt`` (:data:`T2I_PREFIX`), the
unconditional branch from ``"<image>\\nGenerate an image."`` with the same blank image, 50 steps,
``txt_cfg`` 5, ``img_cfg`` 0, ``cond["vae_pixel_values"]`` set from ``process_image_aspectratio``.

**The conditioning** is the tensor of ``generate_condition``'s dict that is ``2 H`` wide (``H`` the
LM's width): the last two hidden layers concatenated, what enters the generator's text input (the
Ovis-U1 report; the dict's key is not assumed -- exactly one such tensor must be there, else the
error lists the dict). Its slots are checked to be the LM's positions: the first ``H`` columns
must equal the LM's final-norm output at the same positions (a forward hook on ``llm.model.norm``).
Each prompt is encoded alone (the script's batch of one); a batch is left-padded
(``stack_conditionings``).

**Verified** only on a stand-in with this module tree and interface
(:mod:`unike_interp.testing.ovis_u1_remote`, loaded through ``trust_remote_code`` from a tiny
checkpoint folder). Not verified without Ovis-U1's files: that its ``generate_condition`` returns
the 2H tensor over the LM positions (rather than, e.g., after a refiner), that it accepts a
left-padded batch (the recorder's trace passes one; the benchmark's own calls do not), and that
``generate_img`` returns a list of PIL images. ``generate_from_conditioning`` and a differentiable
conditioning are not offered (the remote dict is opaque): the causal analyses and modality-aware
editing say so and are skipped.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..conditioning import Conditioning, stack_conditionings
from .base import UMMAdapter
from .sites import TraceOutput

#: What the test script puts before a text-to-image prompt (after the image tag).
T2I_PREFIX = ("<image>\nDescribe the image by detailing the color, shape, size, texture, quantity, text, and spatial "
              "relationships of the objects:")
#: The unconditional prompt of the script's classifier-free guidance.
UNCOND_PROMPT = "<image>\nGenerate an image."
#: ``pipeline_kwargs`` the adapter accepts, with the script's defaults.
DEFAULTS = {"height": 1024, "width": 1024, "max_new_tokens": 1024}


class RemoteCodeRefused(PermissionError):
    """Loading would run code from the checkpoint folder, and the user has not allowed it."""


def _refuse(path: Path) -> RemoteCodeRefused:
    files = sorted(p.name for p in Path(path).glob("*.py"))
    return RemoteCodeRefused(
        f"{path}: Ovis-U1's model code ships inside its checkpoint folder ({', '.join(files) or 'its *.py files'}) "
        "and runs when the model loads. Read it; if you trust it, pass --trust-remote-code (Python: "
        "load_model('ovis_u1:<path>', trust_remote_code=True)). It is off by default.")


class OvisU1Adapter(UMMAdapter):
    """Ovis-U1 (see the module docstring). Build with :func:`load_ovis_u1`."""

    family = "llama"
    world = None
    verifier = None
    #: The test script's defaults (``--steps``, ``--txt_cfg``).
    sample_steps = 50
    guidance = 5.0

    def __init__(self, name: str, model, *, device: torch.device, dtype: torch.dtype, pipeline_kwargs: dict | None = None):
        kw = dict(pipeline_kwargs or {})
        unknown = sorted(set(kw) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"Ovis-U1 pipeline_kwargs: unknown {unknown}; accepted: {sorted(DEFAULTS)} (steps and "
                             "guidance are --sample-steps and --guidance)")
        self.settings = {**DEFAULTS, **kw}
        for attr in ("llm", "get_text_tokenizer", "get_visual_tokenizer", "preprocess_inputs", "generate_condition",
                     "generate_img", "visual_generator"):
            if not hasattr(model, attr):
                raise AttributeError(f"{type(model).__name__} has no {attr!r}: not the Ovis-U1 interface this adapter "
                                     "was written for (see unike_interp.models.ovis_u1)")
        ptok = model.get_text_tokenizer()
        if not getattr(ptok, "is_fast", False):
            raise ValueError("Ovis-U1: a fast text tokenizer is needed (offset mappings)")
        tok = copy.deepcopy(ptok)
        tok.padding_side = "left"
        super().__init__(model.llm, tok, device=device, dtype=dtype)
        self.name = name
        self.model = model
        self._trace_module = None

    # --- the script's inputs ---------------------------------------------------------------
    def gen_kwargs(self, *, steps: int, guidance: float, seed: int) -> dict:
        tok = self.model.get_text_tokenizer()
        s = self.settings
        return dict(max_new_tokens=s["max_new_tokens"], do_sample=False, top_p=None, top_k=None, temperature=None,
                    repetition_penalty=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                    use_cache=True, height=s["height"], width=s["width"], num_steps=steps, seed=seed, img_cfg=0,
                    txt_cfg=guidance)

    def build_inputs(self, text: str) -> dict:
        """``test_txt_to_img.build_inputs`` with the blank white image: ``input_ids (1, T)``,
        ``attention_mask``, ``pixel_values``, ``grid_thws``, ``vae_pixel_values`` and the formatted
        ``prompt`` text."""
        from PIL import Image

        m, W, H = self.model, int(self.settings["width"]), int(self.settings["height"])
        vt = m.get_visual_tokenizer()
        image = Image.new("RGB", (W, H), (255, 255, 255))
        image, vae_pixels, _ = m.visual_generator.process_image_aspectratio(image, (W, H))
        rh, rw = vt.smart_resize(image.height, image.width, max_pixels=vt.image_processor.min_pixels)
        image = image.resize((rw, rh))
        prompt, ids, pixels, grid = m.preprocess_inputs(
            text, [image], generation_preface=None, return_labels=False, propagate_exception=False,
            multimodal_type="single_image", fix_sample_overall_length_navit=False)
        pad = m.get_text_tokenizer().pad_token_id
        dev = self.device
        return {"prompt": prompt, "input_ids": ids.unsqueeze(0).to(dev), "attention_mask": torch.ne(ids, pad).unsqueeze(0).to(dev),
                "pixel_values": None if pixels is None else pixels.to(dev, self.dtype),
                "grid_thws": None if grid is None else grid.to(dev),
                "vae_pixel_values": None if vae_pixels is None else vae_pixels.unsqueeze(0).to(dev)}

    def _condition(self, inp: dict, **gen_kwargs) -> dict:
        return self.model.generate_condition(inp["input_ids"], pixel_values=inp["pixel_values"],
                                             attention_mask=inp["attention_mask"], grid_thws=inp["grid_thws"],
                                             **gen_kwargs)

    def cond_tensor(self, cond: dict) -> torch.Tensor:
        """The one ``(B, S, 2H)`` tensor of ``generate_condition``'s dict."""
        two_h = 2 * self.hidden_size
        found = [k for k, v in cond.items() if torch.is_tensor(v) and v.dim() == 3 and v.shape[-1] == two_h]
        if len(found) != 1:
            shapes = {k: tuple(v.shape) if torch.is_tensor(v) else type(v).__name__ for k, v in cond.items()}
            raise RuntimeError(f"Ovis-U1 generate_condition returned {shapes}; the adapter expects exactly one (B, S, "
                               f"{two_h}) tensor (the last two LM layers concatenated)")
        return cond[found[0]]

    # --- conditioning --------------------------------------------------------------------------
    @torch.no_grad()
    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        prompts = list(prompts)
        if not prompts:
            z = torch.zeros((0, 0), dtype=torch.long, device=self.device)
            return Conditioning(torch.zeros((0, 0, 2 * self.hidden_size), device=self.device), z, z)
        return stack_conditionings([self._one(p) for p in prompts])

    def _one(self, prompt: str) -> Conditioning:
        inp = self.build_inputs(T2I_PREFIX + prompt)
        seen = []
        norm = self.module(self.paths.final_norm)
        handle = norm.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
        try:
            hidden = self.cond_tensor(self._condition(inp, **self.gen_kwargs(steps=1, guidance=1.0, seed=0)))
        finally:
            handle.remove()
        mask = inp["attention_mask"].long()
        T = mask.shape[1]
        H = self.hidden_size
        if hidden.shape[1] != T or not seen or not torch.allclose(hidden[..., :H].float(), seen[0][:, :T].float() * mask[..., None],
                                                                 rtol=1e-3, atol=1e-4):
            raise RuntimeError("Ovis-U1: the conditioning's slots are not the LM's final states at its input positions "
                               f"(conditioning {tuple(hidden.shape)}, LM input {T} tokens); this revision of Ovis-U1's "
                               "code is not supported")
        pos = torch.arange(T, device=mask.device).expand_as(mask).masked_fill(mask == 0, -1)
        return Conditioning(hidden, mask, pos)

    # --- images ------------------------------------------------------------------------------
    def image_hw(self) -> tuple[int, int]:
        return int(self.settings["height"]), int(self.settings["width"])

    @torch.no_grad()
    def _generate_batch(self, prompts: list[str], *, seed: int, steps: int, guidance: float) -> np.ndarray:
        """One ``generate_img`` call per prompt (the script's batch of one), every image seeded with ``seed``."""
        kw = self.gen_kwargs(steps=steps, guidance=guidance, seed=seed)
        no_both = self._condition(self.build_inputs(UNCOND_PROMPT), **kw)
        out = []
        for p in prompts:
            inp = self.build_inputs(T2I_PREFIX + p)
            cond = self._condition(inp, **kw)
            cond["vae_pixel_values"] = inp["vae_pixel_values"]
            img = self.model.generate_img(cond=cond, no_both_cond=no_both, no_txt_cond=None, **kw)
            img = img[0] if isinstance(img, (list, tuple)) else img
            arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img)
            out.append(arr.astype(np.uint8))
        return np.stack(out)

    # --- interpretability -------------------------------------------------------------------
    def connector_weights(self):
        """The conditioning *is* ``[h_L ; h_{L-1}]``: the identity over ``2H``, whose first ``H``
        columns read the LM's last hidden state (what the alignment statistics map a text-side
        change through)."""
        from .base import ConnectorWeights

        H = self.hidden_size
        return ConnectorWeights(np.eye(2 * H, dtype=np.float32), slice(0, H))

    @property
    def generator_blocks(self) -> list[str]:
        """None recorded: the generator runs inside remote code the adapter does not take apart."""
        return []

    def conditioning_sites(self) -> list:
        """The conditioning (``cond``: the 2H tensor, marked by an identity module in the trace)."""
        from .sites import Site

        return [Site("cond.tensor", "conditioning", "cond")]

    def trace_module(self) -> torch.nn.Module:
        if self._trace_module is None:
            self._trace_module = _OvisU1Path(self)
        return self._trace_module

    def trace_inputs(self, prompts: Sequence[str], *, seed: int = 0) -> tuple[tuple, dict]:
        """One left-padded batch of the script's inputs: ``(input_ids, attention_mask, pixel_values,
        grid_thws)``. ``extra``: the same ids and mask with the offsets of the text tokens relative to
        the user's prompt (visual placeholders and template tokens ``(0, 0)``)."""
        inputs = [self.build_inputs(T2I_PREFIX + p) for p in prompts]
        offsets = [self._offsets(inp, p) for inp, p in zip(inputs, prompts)]
        T = max(inp["input_ids"].shape[1] for inp in inputs)
        pad = self.model.get_text_tokenizer().pad_token_id
        ids = torch.full((len(prompts), T), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), T), dtype=torch.long)
        off = torch.zeros((len(prompts), T, 2), dtype=torch.long)
        for b, (inp, o) in enumerate(zip(inputs, offsets)):
            n = inp["input_ids"].shape[1]
            ids[b, T - n:] = inp["input_ids"][0].cpu()
            mask[b, T - n:] = inp["attention_mask"][0].long().cpu()
            off[b, T - n:] = o
        pix = [inp["pixel_values"] for inp in inputs if inp["pixel_values"] is not None]
        grid = [inp["grid_thws"] for inp in inputs if inp["grid_thws"] is not None]
        dev = self.device
        args = (ids.to(dev), mask.to(dev), torch.cat(pix) if pix else None, torch.cat(grid) if grid else None)
        return args, {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "offset_mapping": off}

    def _offsets(self, inp: dict, prompt: str) -> torch.Tensor:
        """Character offsets ``(T, 2)`` of each input token within ``prompt`` (the user's text): the
        formatted text's pieces around ``<image>`` tokenised again and aligned with the non-negative
        ids of ``input_ids`` (the visual placeholders are negative in the Ovis family)."""
        tok = self.model.get_text_tokenizer()
        text, ids = inp["prompt"], inp["input_ids"][0].cpu()
        start = text.rfind(T2I_PREFIX.split("\n", 1)[1] + prompt)
        if start < 0:
            raise RuntimeError("Ovis-U1: the formatted prompt does not contain the user's prompt")
        start += len(T2I_PREFIX.split("\n", 1)[1])
        got_ids, got_off, base = [], [], 0
        for k, piece in enumerate(text.split("<image>")):
            enc = tok(piece, add_special_tokens=False, return_offsets_mapping=True)
            got_ids += enc["input_ids"]
            got_off += [(a + base, b + base) for a, b in enc["offset_mapping"]]
            base += len(piece) + len("<image>")
        text_cols = (ids >= 0).nonzero().flatten()
        if [int(ids[c]) for c in text_cols] != got_ids:
            raise RuntimeError("Ovis-U1: preprocess_inputs tokenised the text differently from its tokenizer; the "
                               "prompt's tokens cannot be located")
        out = torch.zeros((ids.shape[0], 2), dtype=torch.long)
        for c, (a, b) in zip(text_cols.tolist(), got_off):
            a, b = a - start, b - start
            if b > 0 and a < len(prompt):
                out[c] = torch.tensor([max(a, 0), min(b, len(prompt))])
        return out


class _OvisU1Path(torch.nn.Module):
    """The script's inputs -> the remote ``generate_condition`` (the LM runs inside it) -> the 2H
    conditioning, passed through the identity ``cond`` so the recorder can read it. ``lm`` is the
    adapter's LM (the same object as ``model.llm``). The generator is not run (``generator_out`` is
    the conditioning itself): its internals belong to the remote code."""

    def __init__(self, adapter: OvisU1Adapter):
        super().__init__()
        self.lm = adapter.lm
        self.cond = torch.nn.Identity()
        self._adapter = [adapter]  # not a submodule: the trace holds the LM once

    def forward(self, input_ids, attention_mask, pixel_values, grid_thws) -> TraceOutput:
        a = self._adapter[0]
        d = a.model.generate_condition(input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                                       grid_thws=grid_thws, **a.gen_kwargs(steps=1, guidance=1.0, seed=0))
        hidden = self.cond(a.cond_tensor(d))
        mask = attention_mask.long()
        pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask).masked_fill(mask == 0, -1)
        return TraceOutput(hidden, Conditioning(hidden, mask, pos))


def load_ovis_u1(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 name: str | None = None, pipeline_kwargs: dict | None = None,
                 trust_remote_code: bool = False) -> OvisU1Adapter:
    """Load an Ovis-U1 checkpoint folder offline with ``AutoModelForCausalLM.from_pretrained(path,
    trust_remote_code=True)`` -- only when ``trust_remote_code`` is given (else
    :class:`RemoteCodeRefused`, naming ``--trust-remote-code``). ``pipeline_kwargs``: ``height``,
    ``width`` (1024), ``max_new_tokens`` (1024), as the test script passes them."""
    from transformers import AutoModelForCausalLM

    from .hub import resolve_model_folder

    path = Path(path) if Path(path).is_dir() else resolve_model_folder(path, marker="config.json")
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json (an Ovis-U1 checkpoint folder holds config.json, its model "
                                "code *.py, weights and tokenizer files)")
    if not trust_remote_code:
        raise _refuse(path)
    unknown = sorted(set(pipeline_kwargs or {}) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Ovis-U1 pipeline_kwargs: unknown {unknown}; accepted: {sorted(DEFAULTS)}")
    device = torch.device(device)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=True, local_files_only=True)
    model.to(device).eval()
    return OvisU1Adapter(name or f"ovis_u1:{path}", model, device=device, dtype=dtype, pipeline_kwargs=pipeline_kwargs)

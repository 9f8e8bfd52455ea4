"""An OmniGen2 adapter without OmniGen2's code: a tiny random Qwen2.5-VL (transformers' own class)
driven by stand-ins for ``OmniGen2Pipeline`` and ``OmniGen2Transformer2DModel``.

The stand-ins reproduce the interface the adapter relies on, as read from OmniGen2's
``pipeline_omnigen2.py`` (chat template with the system message, ``padding="longest"``,
``mllm(...).hidden_states[-1]``, the input-image handling of ``prepare_image``,
``transformer(x, t, text, freqs_cis, mask, ref_image_hidden_states=...)``, a list of generators),
not OmniGen2's numerics: they test the adapter's plumbing, not OmniGen2. Where OmniGen2's code is
importable, :mod:`unike_interp.testing.omnigen2_official` builds the same tiny adapter on it.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ..models.omnigen2 import SYSTEM_PROMPT, OmniGen2Adapter
from .tiny import CHATML, chatml_tokenizer, tiny_qwen2_5_vl, tiny_tokenizer  # noqa: F401  (re-exported)

class _Block(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = torch.nn.Linear(d, d)

    def forward(self, h, mask=None, rope=None, temb=None):
        return h + torch.tanh(self.lin(h))


class _TimeCaption(torch.nn.Module):
    def __init__(self, text_dim, d):
        super().__init__()
        self.time = torch.nn.Linear(1, d)
        self.caption_embedder = torch.nn.Sequential(torch.nn.RMSNorm(text_dim), torch.nn.Linear(text_dim, d))

    def forward(self, t, text, dtype):
        return self.time(t[:, None].to(dtype)), self.caption_embedder(text)


class StandInTransformer(torch.nn.Module):
    """The interface of ``OmniGen2Transformer2DModel.forward`` (not its computation): caption
    embedder, one refiner block, two joint blocks; ``calls`` records every call's arguments."""

    def __init__(self, text_dim=64, d=32, channels=4, patch=2):
        super().__init__()
        self.config = SimpleNamespace(in_channels=channels, patch_size=patch, axes_dim_rope=(4, 6, 6),
                                      axes_lens=(64, 16, 16))
        self.time_caption_embed = _TimeCaption(text_dim, d)
        self.context_refiner = torch.nn.ModuleList([_Block(d)])
        self.x_embedder = torch.nn.Linear(patch * patch * channels, d)
        self.layers = torch.nn.ModuleList([_Block(d), _Block(d)])
        self.out = torch.nn.Linear(d, patch * patch * channels)
        self.calls = []

    def forward(self, hidden_states, timestep, text_hidden_states, freqs_cis, text_attention_mask,
                ref_image_hidden_states=None, attention_kwargs=None, return_dict=False):
        """``(B, C, H, W)`` latents -> ``(B, C, H, W)`` velocity; the caption ``(B, S, text_dim)``."""
        self.calls.append({"text": text_hidden_states, "mask": text_attention_mask, "freqs_cis": freqs_cis,
                           "ref": ref_image_hidden_states})
        x = hidden_states
        B, C, H, W = x.shape
        p = self.config.patch_size
        temb, cap = self.time_caption_embed(timestep, text_hidden_states, x.dtype)
        for block in self.context_refiner:
            cap = block(cap, text_attention_mask)
        m = text_attention_mask[..., None].to(cap.dtype)
        pooled = (cap * m).sum(1) / m.sum(1)
        tokens = x.view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, -1, p * p * C)
        img = self.x_embedder(tokens) + pooled[:, None] + temb[:, None]
        h = torch.cat([cap * m, img], dim=1)
        for block in self.layers:
            h = block(h)
        out = self.out(h[:, cap.shape[1]:])
        return out.view(B, H // p, W // p, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W)


class StandInPipeline:
    """The parts of ``OmniGen2Pipeline`` the adapter uses, restating its text path (chat template,
    ``padding="longest"``, ``hidden_states[-1]``), with a toy Euler sampler and an 8x nearest
    "decoder"; ``calls`` records every call's arguments."""

    def __init__(self, mllm, tokenizer, transformer):
        self.mllm = mllm
        self.processor = SimpleNamespace(tokenizer=tokenizer)
        self.transformer = transformer
        self.default_sample_size = 4
        self.vae_scale_factor = 8
        self.calls = []

    def _apply_chat_template(self, prompt):
        msgs = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        return self.processor.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)

    def _embed(self, texts, device, max_sequence_length):
        enc = self.processor.tokenizer(texts, padding="longest", max_length=max_sequence_length, truncation=True,
                                       return_tensors="pt")
        ids, mask = enc.input_ids.to(device), enc.attention_mask.to(device)
        h = self.mllm(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        return h.to(dtype=self.mllm.dtype, device=device), mask

    def encode_prompt(self, prompt, do_classifier_free_guidance=True, negative_prompt=None, num_images_per_prompt=1,
                      device=None, max_sequence_length=256):
        prompt = [prompt] if isinstance(prompt, str) else prompt
        emb, mask = self._embed([self._apply_chat_template(p) for p in prompt], device, max_sequence_length)
        neg = neg_mask = None
        if do_classifier_free_guidance:
            neg, neg_mask = self._embed([self._apply_chat_template(negative_prompt or "")] * len(prompt), device,
                                        max_sequence_length)
        return emb, mask, neg, neg_mask

    def prepare_image(self, images, batch_size, num_images_per_prompt=1):
        """The input-image handling of ``OmniGen2Pipeline.prepare_image`` (the VAE encoding left out:
        an image becomes a placeholder tensor): one prompt's ``images`` is wrapped in a list, more
        prompts' ``images`` are iterated, one entry (a list of images, or ``None``) per prompt. So
        ``None`` fails on two or more prompts, as it does in OmniGen2."""
        if batch_size == 1:
            images = [images]
        out = []
        for img in images:  # TypeError on None, as in OmniGen2
            refs = [self._preprocess(im) for im in img] if img else None
            out += [refs] * num_images_per_prompt
        return out

    def _preprocess(self, image):
        """Stands in for the image processor and VAE encoder: rejects what OmniGen2's image processor
        rejects (a ``None`` image among a prompt's images), else a placeholder latent."""
        if image is None:
            raise ValueError("Input is in incorrect format (a None image; the image processor takes PIL images, "
                             "arrays or tensors)")
        return torch.zeros(self.transformer.config.in_channels, 1, 1)

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, max_sequence_length=None, input_images=None,
                 num_inference_steps=28, text_guidance_scale=4.0, generator=None, output_type="pil", height=None,
                 width=None):
        from diffusers.utils.torch_utils import randn_tensor

        self.calls.append({"prompt": list(prompt), "steps": num_inference_steps, "guidance": text_guidance_scale,
                           "generator": generator, "output_type": output_type,
                           "max_sequence_length": max_sequence_length, "negative_prompt": negative_prompt,
                           "input_images": input_images, "height": height, "width": width})
        emb, mask, neg, neg_mask = self.encode_prompt(prompt, text_guidance_scale > 1.0, negative_prompt,
                                                      device=self.mllm.device, max_sequence_length=max_sequence_length)
        B = len(prompt)
        refs = self.prepare_image(input_images, B)
        side = (height or self.default_sample_size * self.vae_scale_factor) // self.vae_scale_factor
        x = randn_tensor((B, self.transformer.config.in_channels, side, side), generator=generator,
                         device=self.mllm.device, dtype=emb.dtype)
        ts = torch.linspace(0, 1, num_inference_steps + 1)
        for t, t_next in zip(ts[:-1], ts[1:]):
            # OmniGen2's conditional branch gets the prepared reference images, its unconditional one None
            v = self.transformer(x, t.expand(B), emb, [torch.zeros(1)], mask, ref_image_hidden_states=refs)
            if text_guidance_scale > 1.0:
                u = self.transformer(x, t.expand(B), neg, [torch.zeros(1)], neg_mask, ref_image_hidden_states=None)
                v = u + text_guidance_scale * (v - u)
            x = x + (t_next - t) * v
        img = torch.sigmoid(x[:, :3]).repeat_interleave(self.vae_scale_factor, 2).repeat_interleave(
            self.vae_scale_factor, 3)
        return SimpleNamespace(images=img.permute(0, 2, 3, 1).float().numpy())


def _freqs_cis(axes_dim, axes_lens, theta):
    """Stands in for ``OmniGen2RotaryPosEmbed.get_freqs_cis`` (shapes only)."""
    return [torch.zeros(e, d // 2) for d, e in zip(axes_dim, axes_lens)]


def tiny_omnigen2(seed: int = 0, name: str = "omnigen2:tiny") -> OmniGen2Adapter:
    """An :class:`OmniGen2Adapter` on a tiny random Qwen2.5-VL (text hidden 64, 4 layers, tied head,
    the SynthWorld tokenizer with ChatML) and the stand-ins: 32-pixel images, 28 steps, guidance 4."""
    tok = chatml_tokenizer()
    mllm = tiny_qwen2_5_vl(tok, seed, hidden=64, mrope_section=(4, 6, 6), tied=True)
    pipe = StandInPipeline(mllm, tok, StandInTransformer().eval())
    return OmniGen2Adapter(name, pipe, device=torch.device("cpu"), dtype=torch.float32, freqs_cis_fn=_freqs_cis)

"""An Ovis-U1 stand-in: the interface the public Ovis-U1 test scripts call (AIDC-AI/Ovis-U1
``test_txt_to_img.py``: ``get_text_tokenizer``, ``get_visual_tokenizer``, ``preprocess_inputs``,
``generate_condition``, ``generate_img``, ``visual_generator.process_image_aspectratio``,
``visual_tokenizer.smart_resize`` / ``image_processor.min_pixels``) over the module tree the Ovis
family uses (``llm``: a Qwen3 causal LM; ``visual_tokenizer``; ``visual_generator``), with the
conditioning the Ovis-U1 report describes: the last two hidden layers of the LM concatenated,
``[h_L ; h_{L-1}]`` (width 2H), entering the generator's text input. Not Ovis-U1's code (which is
not public outside its checkpoint): its numerics are a tiny MMDiT from diffusers.

Remote code, for the tests of ``trust_remote_code`` loading: the builder copies this file and
``configuration_ovis_u1.py`` into a checkpoint folder, and ``AutoModelForCausalLM.from_pretrained(
folder, trust_remote_code=True)`` imports them from there. It imports only torch, numpy, PIL,
transformers and diffusers.

Visual tokens: ``preprocess_inputs`` replaces ``<image>`` with ``-301, -300 x n, -302`` (start,
one placeholder per patch, end); ``merge`` puts the patch embeddings and two learned indicator
embeddings at those positions. Batches are left-padded; position ids follow the mask.
"""

from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedModel, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

try:
    from .configuration_ovis_u1 import OvisU1StandInConfig
except ImportError:  # imported as a plain module (not through transformers' dynamic modules)
    from configuration_ovis_u1 import OvisU1StandInConfig

VISUAL_ATOM, IMAGE_START, IMAGE_END = -300, -301, -302


class VisualTokenizer(torch.nn.Module):
    def __init__(self, config, hidden):
        super().__init__()
        self.patch = int(config.patch)
        self.proj = torch.nn.Linear(3 * self.patch * self.patch, hidden)
        self.image_processor = SimpleNamespace(min_pixels=int(config.min_pixels))

    def smart_resize(self, height, width, max_pixels=None):
        p = self.patch
        return max(p, height // p * p), max(p, width // p * p)

    def preprocess(self, image):
        """PIL image -> ``(patches (n, 3 p p), grid (1, 3))``."""
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
        p = self.patch
        h, w = x.shape[0] // p, x.shape[1] // p
        patches = x[: h * p, : w * p].reshape(h, p, w, p, 3).permute(0, 2, 4, 1, 3).reshape(h * w, 3 * p * p)
        return patches, torch.tensor([[1, h, w]])

    def forward(self, pixel_values):
        return self.proj(pixel_values.to(self.proj.weight.dtype))


class VisualGenerator(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        from diffusers import AutoencoderKL, OvisImageTransformer2DModel

        self.transformer = OvisImageTransformer2DModel(**config.generator)
        self.vae = AutoencoderKL(**config.vae)

    @property
    def vae_scale_factor(self):
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def process_image_aspectratio(self, image, target_size):
        image = image.resize(tuple(target_size))
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        f = self.vae_scale_factor * 2
        ids = torch.zeros(target_size[1] // f, target_size[0] // f, 3)
        return image, x, ids


class OvisU1StandIn(PreTrainedModel):
    config_class = OvisU1StandInConfig
    base_model_prefix = "ovis_u1"
    _no_split_modules = []

    def __init__(self, config):
        super().__init__(config)
        self.llm = Qwen3ForCausalLM(Qwen3Config(**config.llm_config))
        hidden = self.llm.config.hidden_size
        self.visual_tokenizer = VisualTokenizer(config, hidden)
        self.indicators = torch.nn.Embedding(2, hidden)
        self.visual_generator = VisualGenerator(config)
        self._text_tokenizer = None
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            module.weight.data.normal_(0.0, 0.02)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()

    # --- what the test scripts call ------------------------------------------------------------
    def get_text_tokenizer(self):
        if self._text_tokenizer is None:
            self._text_tokenizer = PreTrainedTokenizerFast.from_pretrained(self.config.name_or_path)
        return self._text_tokenizer

    def get_visual_tokenizer(self):
        return self.visual_tokenizer

    def preprocess_inputs(self, text, images, generation_preface=None, return_labels=False,
                          propagate_exception=False, multimodal_type="single_image",
                          fix_sample_overall_length_navit=False):
        tok = self.get_text_tokenizer()
        prompt = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)
        pieces = prompt.split("<image>")
        if len(pieces) - 1 != len(images):
            raise ValueError(f"{len(pieces) - 1} <image> tags for {len(images)} images")
        ids, pixels, grids = [], [], []
        for k, piece in enumerate(pieces):
            ids += tok(piece, add_special_tokens=False)["input_ids"]
            if k < len(images):
                pv, grid = self.visual_tokenizer.preprocess(images[k])
                ids += [IMAGE_START] + [VISUAL_ATOM] * pv.shape[0] + [IMAGE_END]
                pixels.append(pv)
                grids.append(grid)
        pv = torch.cat(pixels) if pixels else None
        grid = torch.cat(grids) if grids else None
        return prompt, torch.tensor(ids, dtype=torch.long), pv, grid

    def merge(self, input_ids, pixel_values):
        """``(B, T)`` ids with visual placeholders -> ``(B, T, H)`` input embeddings."""
        emb = self.llm.get_input_embeddings()
        out = emb(input_ids.clamp(min=0))
        if pixel_values is not None:
            vis = self.visual_tokenizer(pixel_values.to(out.device)).to(out.dtype)
            at = input_ids == VISUAL_ATOM
            if int(at.sum()) != vis.shape[0]:
                raise ValueError(f"{int(at.sum())} visual placeholders for {vis.shape[0]} patch embeddings")
            out = out.masked_scatter(at[..., None], vis)
        for k, tag in enumerate((IMAGE_START, IMAGE_END)):
            out = torch.where((input_ids == tag)[..., None], self.indicators.weight[k].to(out.dtype), out)
        return out

    def generate_condition(self, input_ids, pixel_values=None, attention_mask=None, grid_thws=None, **gen_kwargs):
        mask = attention_mask.long() if attention_mask is not None else torch.ones_like(input_ids)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.llm.model(inputs_embeds=self.merge(input_ids, pixel_values), attention_mask=mask,
                             position_ids=pos, output_hidden_states=True, use_cache=False)
        h = torch.cat([out.hidden_states[-1], out.hidden_states[-2]], dim=-1)
        return {"txt": h * mask[..., None].to(h.dtype), "txt_mask": mask}

    @torch.no_grad()
    def generate_img(self, cond, no_both_cond=None, no_txt_cond=None, height=1024, width=1024, num_steps=50, seed=42,
                     img_cfg=0, txt_cfg=5.0, **kwargs):
        gen = self.visual_generator
        tr, vae = gen.transformer, gen.vae
        f = gen.vae_scale_factor
        h, w = 2 * (height // (2 * f)), 2 * (width // (2 * f))
        C = tr.config.in_channels // 4
        B = cond["txt"].shape[0]
        x = torch.randn((1, C, h, w), generator=torch.Generator("cpu").manual_seed(int(seed))).expand(B, -1, -1, -1)
        x = x.to(tr.device, tr.dtype).reshape(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
        x = x.reshape(B, (h // 2) * (w // 2), C * 4)
        img_ids = torch.zeros(h // 2, w // 2, 3)
        img_ids[..., 1] += torch.arange(h // 2)[:, None]
        img_ids[..., 2] += torch.arange(w // 2)[None, :]
        img_ids = img_ids.reshape(-1, 3).to(tr.device, tr.dtype)

        def velocity(c, t):
            txt = c["txt"].to(tr.dtype)
            txt = txt.expand(B, -1, -1) if txt.shape[0] == 1 else txt
            txt_ids = torch.zeros(txt.shape[1], 3, device=tr.device, dtype=tr.dtype)
            txt_ids[:, 1] = txt_ids[:, 2] = torch.arange(txt.shape[1], device=tr.device, dtype=tr.dtype)
            tt = torch.full((B,), t, device=tr.device, dtype=tr.dtype)
            return tr(x, txt, tt, img_ids, txt_ids, return_dict=False)[0]

        sigmas = np.linspace(1.0, 1.0 / num_steps, num_steps).tolist() + [0.0]
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            v = velocity(cond, s)
            if no_both_cond is not None and txt_cfg != 1:
                u = velocity(no_both_cond, s)
                v = u + txt_cfg * (v - u)
            x = x + (s_next - s) * v
        lat = x.reshape(B, h // 2, w // 2, C, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, C, h, w)
        img = vae.decode(lat.to(vae.dtype)).sample
        arr = ((img.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return [Image.fromarray(a) for a in arr]

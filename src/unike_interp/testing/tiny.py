"""Tiny random Janus, Lumina2, Sana and Qwen-Image checkpoints, saved as the real ones are.

Each ``build_tiny_*`` writes a folder (safetensors) that ``load_model("<family>:<folder>")`` loads
like a real checkpoint, in seconds on a CPU. Every model uses the SynthWorld byte-level BPE
tokenizer (1000 tokens with pad/bos/eos) plus the special tokens its family needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

#: The SynthWorld tokenizer shipped in the package's assets.
TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "assets" / "synthworld" / "tokenizer"

#: Chat template of the tiny Janus (the shape of Janus-Pro's ``<|User|>: ... <|Assistant|>:``).
TINY_JANUS_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}<|User|>: "
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{{ '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)


#: Qwen's ChatML template (what OmniGen2's processor applies; Ovis-Image's tokenizer too), for the SynthWorld tokenizer.
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chatml_tokenizer():
    """The SynthWorld tokenizer with ``<|im_start|>``/``<|im_end|>`` and :data:`CHATML`."""
    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>"])
    tok.chat_template = CHATML
    return tok


def tiny_tokenizer(extra_special: Sequence[str] = ()):
    """The SynthWorld tokenizer (a fast tokenizer), with ``extra_special`` tokens appended."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(TOKENIZER_DIR))
    if extra_special:
        tok.add_special_tokens({"additional_special_tokens": list(extra_special)})
    return tok


def _tiny_gemma2(tok, seed: int, max_positions: int = 512):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    cfg = Gemma2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=max_positions, sliding_window=max_positions,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    return Gemma2ForCausalLM(cfg).eval()


def build_tiny_janus(out_dir: str | Path, seed: int = 0, *, tie_word_embeddings: bool = True) -> Path:
    """A tiny random ``JanusForConditionalGeneration`` with its processor, saved to ``out_dir``.

    Llama text model (hidden 64, 4 layers) on the SynthWorld tokenizer plus Janus's special tokens
    (``<image_placeholder>``, ``<begin_of_image>``, ``<end_of_image>``: vocabulary 1003); a 1-layer
    SigLIP vision tower on 16x16 images with patch 4, so ``num_image_tokens = 16``; a VQ model with
    64 codes, a 4x4 code grid and 4 resolutions (3 upsamplings): images are ``4 * 8 = 32`` pixels
    square. ``projection_dim`` and ``image_token_embed_dim`` equal the text hidden size; the
    generation config carries ``generation_kwargs={"boi_token_id": ...}`` and ``guidance_scale=5``.
    The generation head is re-drawn with unit-scale weights (code logits of standard deviation ~2;
    at the default 0.02 init they are ~0.01, every code equally likely, and every prompt draws the
    same image). ``tie_word_embeddings=False`` gives the text head its own weights (a module past
    the read-out).
    """
    from transformers import (GenerationConfig, JanusConfig, JanusForConditionalGeneration, JanusImageProcessor,
                              JanusProcessor, LlamaConfig, PreTrainedTokenizerFast)
    from transformers.models.janus.configuration_janus import JanusVisionConfig, JanusVQVAEConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = PreTrainedTokenizerFast.from_pretrained(
        str(TOKENIZER_DIR), extra_special_tokens={"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>",
                                                  "eoi_token": "<end_of_image>"})
    tok.padding_side = "left"
    image_token_id, boi = tok.convert_tokens_to_ids([tok.image_token, tok.boi_token])
    torch.manual_seed(seed)
    H = 64
    text = LlamaConfig(vocab_size=len(tok), hidden_size=H, intermediate_size=128, num_hidden_layers=4,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    vision = JanusVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                               patch_size=4, projection_dim=H, num_image_tokens=16, depth=2)
    vq = JanusVQVAEConfig(embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32,
                          channel_multiplier=[1, 1, 1, 1], num_res_blocks=1, projection_dim=H,
                          image_token_embed_dim=H, num_hidden_layers=2)
    cfg = JanusConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), vq_config=vq.to_dict(),
                      image_token_id=image_token_id, tie_word_embeddings=tie_word_embeddings)
    model = JanusForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # logits with some spread, so that prompts (and edits) change the drawn codes
        head = model.model.generation_head
        torch.nn.init.normal_(head.proj_out.weight, std=H ** -0.5)
        torch.nn.init.normal_(head.vision_head.weight, std=3 * H ** -0.5)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        guidance_scale=5.0, generation_kwargs={"boi_token_id": boi})
    model.save_pretrained(str(out), safe_serialization=True)
    ip = JanusImageProcessor(size={"height": 16, "width": 16}, min_size=4)
    proc = JanusProcessor(image_processor=ip, tokenizer=tok, chat_template=TINY_JANUS_CHAT_TEMPLATE,
                          num_image_tokens=16)
    proc.save_pretrained(str(out))
    return out


def build_tiny_lumina2(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random Lumina2 pipeline saved to ``out_dir``.

    Gemma-2 text encoder (hidden 64, 4 layers), a Lumina2 transformer (hidden 32, 2 joint blocks, 1
    refiner block each side, patch 2, ``sample_size`` 4) and a 4-level AutoencoderKL (8x): the
    pipeline's default image is ``4 * 8 = 32`` pixels square. ``text_encoder/`` holds a
    ``Gemma2Model``, as the real checkpoint does.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer()
    lm = _tiny_gemma2(tok, seed)
    transformer = Lumina2Transformer2DModel(
        sample_size=4, patch_size=2, in_channels=4, hidden_size=32, num_layers=2, num_refiner_layers=1,
        num_attention_heads=2, num_kv_heads=1, multiple_of=16, axes_dim_rope=(4, 6, 6), axes_lens=(300, 16, 16),
        cap_feat_dim=lm.config.hidden_size,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=1.0, shift_factor=0.0,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=6.0)
    pipe = Lumina2Pipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=lm.model, tokenizer=tok)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def build_tiny_sana(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random Sana pipeline saved to ``out_dir``: Gemma-2 text encoder (as for Lumina2, with
    room for the complex human instruction's ~570 tokens of this tokenizer), a Sana transformer
    (2 blocks, hidden 32, ``sample_size`` 8) and a 3-level AutoencoderDC (4x): 32-pixel images.
    Resolution binning (``use_resolution_binning``) knows only the real sizes: pass
    ``pipeline_kwargs={"use_resolution_binning": False}`` for this model."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer()
    lm = _tiny_gemma2(tok, seed, max_positions=1024)
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32,
        caption_channels=lm.config.hidden_size, sample_size=8, patch_size=1,
    )
    vae = AutoencoderDC(
        in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=("ResBlock",) * 3,
        decoder_block_types=("ResBlock",) * 3, encoder_block_out_channels=(8, 8, 8),
        decoder_block_out_channels=(8, 8, 8), encoder_layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
        encoder_qkv_multiscales=((), (), ()), decoder_qkv_multiscales=((), (), ()), decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=1.0,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = SanaPipeline(tokenizer=tok, text_encoder=lm.model, vae=vae, transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def tiny_qwen2_5_vl(tok, seed: int = 0, *, hidden: int = 32, mrope_section=(2, 2, 4), tied: bool = False):
    """A tiny random ``Qwen2_5_VLForConditionalGeneration`` (4 text layers, a 1-block vision tower
    it never uses here) over ``tok``; image/video/vision token ids lie outside its vocabulary."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    n = len(tok)
    cfg = Qwen2_5_VLConfig(
        text_config={"vocab_size": n, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 4,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 1024,
                     "rope_scaling": {"mrope_section": list(mrope_section), "rope_type": "default", "type": "default"},
                     "tie_word_embeddings": tied, "pad_token_id": tok.pad_token_id,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": hidden},
        vocab_size=n, tie_word_embeddings=tied,
        image_token_id=n + 10, video_token_id=n + 11, vision_start_token_id=n + 12, vision_end_token_id=n + 13,
    )
    return Qwen2_5_VLForConditionalGeneration(cfg).eval()


def build_tiny_qwenimage(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random Qwen-Image pipeline saved to ``out_dir``: a Qwen2.5-VL text encoder (text
    hidden 32, untied head) on the SynthWorld tokenizer plus the chat tokens
    ``<|im_start|>``/``<|im_end|>``, a Qwen-Image transformer (2 blocks, inner 32) and a 3-level
    Qwen-Image VAE (4x spatial). The pipeline's default image is ``128 * 4 = 512`` pixels; pass
    ``pipeline_kwargs={"height": 32, "width": 32}``."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>"])
    lm = tiny_qwen2_5_vl(tok, seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, axes_dims_rope=(4, 6, 6),
    )
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                                base_image_seq_len=16, max_image_seq_len=256)
    pipe = QwenImagePipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=lm, tokenizer=tok)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


#: Shape of the tiny BLIP3o's diffusion transformer (``config.json``'s ``dit_config``): a 2 x 2 grid
#: of 16-d "CLIP features", width 32, 2 Lumina-Next blocks.
TINY_BLIP3O_DIT = {"input_size": 2, "patch_size": 1, "in_channels": 16, "dim": 32, "n_layers": 2, "n_heads": 2,
                   "n_kv_heads": 2, "multiple_of": 16}


def build_tiny_blip3o(out_dir: str | Path, seed: int = 0, *, n_query: int = 4) -> Path:
    """A tiny random BLIP3o checkpoint folder, written in the published layout and tensor names.

    ``config.json`` in upstream's flat Qwen2.5-VL form (``model_type`` ``blip3o_qwen_inference``,
    text hidden 32, 4 layers, tied head as Qwen2.5-VL-3B) plus ``n_query`` and ``dit_config``
    (:data:`TINY_BLIP3O_DIT`); ``model.safetensors`` with ``model.*``, ``visual.*``,
    ``model.latent_queries``, ``model.dit.model.*`` and an EVA-CLIP stand-in under
    ``model.gen_vision_tower.*`` (published but unused here); the SynthWorld tokenizer with the ChatML
    tokens but *without* ``<im_patch>`` (the loader adds it, as upstream's does; the embedding has
    its row); ``diffusion-decoder/`` with an SDXL-style ``UNet2DConditionModel`` (``text_time``
    added conditioning, cross-attention over the 16-d features, ``sample_size`` 4), a 4-level
    ``AutoencoderKL`` (8x: 32-pixel images) and an ``EulerDiscreteScheduler``. Tensors that
    diffusers initialises to zero (gates, modulations) get small seeded values, so that prompts
    reach the image."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from ..models.blip3o import MARKER_TOKEN, Blip3oDiTConfig, Blip3oGenerator, save_blip3o_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>"])
    n = len(tok) + 1  # the row of <im_patch>, added at load time
    hidden = 32
    config = {
        "architectures": ["blip3oQwenForInferenceLM"], "model_type": "blip3o_qwen_inference",
        "vocab_size": n, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 4,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 1024,
        "rope_scaling": {"mrope_section": [2, 2, 4], "rope_type": "default", "type": "default"},
        "tie_word_embeddings": True, "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "vision_config": {"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                          "out_hidden_size": hidden},
        "image_token_id": n + 10, "video_token_id": n + 11, "vision_start_token_id": n + 12,
        "vision_end_token_id": n + 13,
        "n_query": n_query, "gen_pooling": "early_pool2d_4", "dit_config": dict(TINY_BLIP3O_DIT),
    }
    torch.manual_seed(seed)
    lm_kwargs = {k: v for k, v in config.items()
                 if k not in ("architectures", "model_type", "n_query", "gen_pooling", "dit_config")}
    lm = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**lm_kwargs)).eval()
    gen = Blip3oGenerator(n_query, hidden, Blip3oDiTConfig(caption_dim=hidden, **TINY_BLIP3O_DIT)).eval()
    with torch.no_grad():
        gen.latent_queries.normal_(0.0, 1.0)
        for p in gen.dit.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    save_blip3o_checkpoint(out, lm, gen, config=config)
    # the published checkpoint also holds the EVA-CLIP encoder that BLIP3o does not run for text-to-image
    tensors = load_file(str(out / "model.safetensors"))
    tensors["model.gen_vision_tower.vision_tower.patch_embed.proj.weight"] = torch.randn(8, 3, 2, 2)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    assert MARKER_TOKEN not in tok.get_vocab()
    tok.save_pretrained(str(out))
    feat = TINY_BLIP3O_DIT["in_channels"]
    dec = out / "diffusion-decoder"
    unet = UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, cross_attention_dim=feat, attention_head_dim=2, addition_embed_type="text_time",
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 * 4 + feat)
    with torch.no_grad():
        for p in unet.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    unet.save_pretrained(str(dec / "unet"), safe_serialization=True)
    AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.13025,
    ).save_pretrained(str(dec / "vae"), safe_serialization=True)
    EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                           timestep_spacing="leading", steps_offset=1).save_pretrained(str(dec / "scheduler"))
    return out


def build_tiny_ovisimage(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random Ovis-Image pipeline (``OvisImagePipeline``) saved to ``out_dir``: a Qwen3 text
    encoder (hidden 64, 4 layers, tied head) on the SynthWorld tokenizer with the ChatML tokens and
    template (right padding), an ``OvisImageTransformer2DModel`` (2 double-stream and 1 single-stream
    blocks, inner 32) and a 4-level AutoencoderKL (8x). The pipeline's default image is ``128 * 8``
    pixels; pass ``pipeline_kwargs={"height": 32, "width": 32}``. Zero-initialised modulations get
    small seeded values."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, OvisImagePipeline, OvisImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>"])
    tok.chat_template = CHATML
    tok.padding_side = "right"
    torch.manual_seed(seed)
    lm = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=1024, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    transformer = OvisImageTransformer2DModel(
        patch_size=1, in_channels=16, out_channels=16, num_layers=2, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=64, axes_dims_rope=(4, 6, 6))
    with torch.no_grad():
        for p in transformer.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=1.0, shift_factor=0.0,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=16, max_image_seq_len=256)
    pipe = OvisImagePipeline(scheduler=scheduler, vae=vae, text_encoder=lm.model, tokenizer=tok, transformer=transformer)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def build_tiny_ovis_u1(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny Ovis-U1 *stand-in* checkpoint folder whose model code ships inside it, as Ovis-U1's does:
    ``config.json`` with an ``auto_map`` to ``configuration_ovis_u1.py`` / ``modeling_ovis_u1.py``
    (copied from :mod:`unike_interp.testing.ovis_u1_remote`), the weights and the tokenizer. Loading it
    needs ``trust_remote_code``. The stand-in: a Qwen3 LM (hidden 32, 4 layers, untied head) on the
    SynthWorld tokenizer with the ChatML tokens, a patch-8 visual tokenizer (a 32-pixel blank image ->
    16 visual tokens), and a tiny MMDiT (``OvisImageTransformer2DModel``, text input 2 x 32 wide: the
    last two LM layers concatenated) with a 4-level AutoencoderKL (8x). Pass
    ``pipeline_kwargs={"height": 32, "width": 32}``."""
    import shutil

    from .ovis_u1_remote.configuration_ovis_u1 import OvisU1StandInConfig
    from .ovis_u1_remote.modeling_ovis_u1 import OvisU1StandIn

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = chatml_tokenizer()
    hidden = 32
    cfg = OvisU1StandInConfig(
        llm_config={"vocab_size": len(tok), "hidden_size": hidden, "intermediate_size": 2 * hidden,
                    "num_hidden_layers": 4, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                    "max_position_embeddings": 1024, "tie_word_embeddings": False, "pad_token_id": tok.pad_token_id,
                    "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id},
        patch=8, min_pixels=1024,
        generator={"patch_size": 1, "in_channels": 16, "out_channels": 16, "num_layers": 1, "num_single_layers": 1,
                   "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 2 * hidden,
                   "axes_dims_rope": [4, 6, 6]},
        vae={"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
             "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [8, 8, 8, 8], "layers_per_block": 1,
             "latent_channels": 4, "norm_num_groups": 4, "sample_size": 32},
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    cfg.auto_map = {"AutoConfig": "configuration_ovis_u1.OvisU1StandInConfig",
                    "AutoModelForCausalLM": "modeling_ovis_u1.OvisU1StandIn"}
    torch.manual_seed(seed)
    model = OvisU1StandIn(cfg).eval()
    with torch.no_grad():
        for p in model.visual_generator.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    src = Path(__file__).resolve().parent / "ovis_u1_remote"
    for name in ("configuration_ovis_u1.py", "modeling_ovis_u1.py"):
        shutil.copy(src / name, out / name)
    return out

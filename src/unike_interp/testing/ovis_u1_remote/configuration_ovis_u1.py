"""Configuration of the Ovis-U1 stand-in (remote code: copied into a checkpoint folder by
``unike_interp.testing.tiny.build_tiny_ovis_u1`` and loaded from there with ``trust_remote_code``).
Self-contained: it imports only transformers."""

from transformers import PretrainedConfig


class OvisU1StandInConfig(PretrainedConfig):
    """``llm_config``: a Qwen3 config dict; ``patch``: the visual tokenizer's patch side;
    ``generator``: the tiny MMDiT's settings (``OvisImageTransformer2DModel`` keyword arguments,
    ``joint_attention_dim`` = 2 x the LM width) and ``vae``: ``AutoencoderKL`` keyword arguments."""

    model_type = "ovis_u1_standin"

    def __init__(self, llm_config=None, patch=8, min_pixels=1024, generator=None, vae=None, **kwargs):
        super().__init__(**kwargs)
        self.llm_config = dict(llm_config or {})
        self.patch = patch
        self.min_pixels = min_pixels
        self.generator = dict(generator or {})
        self.vae = dict(vae or {})

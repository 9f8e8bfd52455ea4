"""The OmniGen2 adapter without OmniGen2's code (not importable here): the error that says what is
missing and how to install it (simulated even where the code is present), the registry entry and
`unike models` requirements, the instruction / layout logic, and the adapter itself on a tiny random
Qwen2.5-VL (transformers' own class) driven by a stand-in pipeline and transformer written here.

The stand-ins reproduce the interface the adapter relies on, as read from OmniGen2's
``pipeline_omnigen2.py`` (chat template with the system message, ``padding="longest"``,
``mllm(...).hidden_states[-1]``, ``transformer(x, t, text, freqs_cis, mask, ref_image_hidden_states=...)``,
a list of generators), not OmniGen2's numerics: these tests check the adapter's plumbing, not
OmniGen2 itself."""

import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unike_interp.models import omnigen2 as og2
from unike_interp.models.omnigen2 import (OmniGen2Adapter, OmniGen2ImportError, build_instruction, decoder_paths,
                                          end_aligned, text_decoder_prefix)

from adapter_checks import assert_intervention_equals_weight_edit, random_delta

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.adapters

PROMPTS = ["a red zib", "the blue zab sits on a wooden table near the window"]
SYSTEM = "You are a helpful assistant that generates high-quality images based on user instructions."
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# --- the missing-code path --------------------------------------------------------------------------

def _hide_omnigen2(monkeypatch):
    """Make every ``import omnigen2...`` fail, whether or not the package is installed."""
    for name in [n for n in sys.modules if n == "omnigen2" or n.startswith("omnigen2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "omnigen2", None)


def test_missing_code_error_says_what_and_how(monkeypatch, tmp_path):
    from unike_interp.models import load_model

    _hide_omnigen2(monkeypatch)
    with pytest.raises(OmniGen2ImportError) as info:
        load_model(f"omnigen2:{tmp_path}")
    err = info.value
    assert isinstance(err, ImportError)
    msg = str(err)
    assert "import omnigen2.pipelines.omnigen2.pipeline_omnigen2" in msg  # which import failed
    assert "ModuleNotFoundError" in msg and "omnigen2" in msg  # the original error
    assert isinstance(err.__cause__, ImportError)
    for needed in ("git clone https://github.com/VectorSpaceLab/OmniGen2", "PYTHONPATH", "pip install -e",
                   "requirements.txt", "model_index.json", "mllm/", "processor/", "transformer/", "vae/", "scheduler/",
                   "omnigen2:/path/to/folder"):
        assert needed in msg, needed


def test_error_raised_inside_omnigen2_is_reported(monkeypatch, tmp_path):
    """A package that is found but fails while importing its own dependencies."""
    for name in [n for n in sys.modules if n == "omnigen2" or n.startswith("omnigen2.")]:
        monkeypatch.delitem(sys.modules, name)
    pkg = tmp_path / "src" / "omnigen2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('omnigen2 needs einops (simulated)')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    with pytest.raises(OmniGen2ImportError, match=r"RuntimeError: omnigen2 needs einops \(simulated\)") as info:
        og2.load_omnigen2(tmp_path)
    assert isinstance(info.value.__cause__, RuntimeError) and "git clone" in str(info.value)


def test_incomplete_module_and_missing_folder(monkeypatch, tmp_path):
    """With stand-in ``omnigen2`` modules: a module lacking its class is named; then a folder that
    is not an OmniGen2 checkpoint is a FileNotFoundError listing the missing parts."""
    _hide_omnigen2(monkeypatch)
    mods = {}
    for module, attr in og2.REQUIRED_IMPORTS:
        parts = module.split(".")
        for k in range(1, len(parts) + 1):
            mods.setdefault(".".join(parts[:k]), types.ModuleType(".".join(parts[:k])))
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    with pytest.raises(OmniGen2ImportError, match="has no OmniGen2Pipeline"):
        og2.import_omnigen2()
    for module, attr in og2.REQUIRED_IMPORTS:
        setattr(mods[module], attr, type(attr, (), {}))
    assert set(og2.import_omnigen2()) == {"pipeline", "transformer", "rotary"}
    (tmp_path / "mllm").mkdir()
    with pytest.raises(FileNotFoundError, match="missing model_index.json, processor, transformer, vae, scheduler"):
        og2.load_omnigen2(tmp_path)


def test_registry_entry_and_requirements(capsys):
    import json

    from unike_interp.cli import main
    from unike_interp.models import known_models, load_model
    from unike_interp.models.registry import model_requirements
    from unike_interp.models.textenc_dit import PRESETS

    assert "omnigen2:<path>" in known_models()
    with pytest.raises(KeyError, match="omnigen2:<path>"):
        load_model("omnigen2:")
    req = model_requirements()
    assert set(req) == set(known_models())
    og = req["omnigen2:<path>"]
    assert any("git clone https://github.com/VectorSpaceLab/OmniGen2" in n for n in og["needs"])
    assert any("mllm" in n and "model_index.json" in n for n in og["needs"])
    try:
        import omnigen2  # noqa: F401
        has_code = True
    except Exception:
        has_code = False
    assert ("omnigen2 (package)" in og["missing"]) is not has_code
    for key, preset in PRESETS.items():  # every preset, described from its own fields
        needs = " ".join(req[f"{key}:<path>"]["needs"])
        assert preset.pipeline in needs and preset.lm_class in needs
        assert req[f"{key}:<path>"]["description"].startswith(preset.description)
    assert req["toy-direct"]["missing"] == [] and req["janus:<path>"]["missing"] == []
    assert model_requirements(check=False)["omnigen2:<path>"]["missing"] is None
    assert main(["models", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["omnigen2:<path>"]["needs"] == og["needs"]
    assert any(line.startswith("omnigen2:<path>") for line in lines)
    assert any("needs: a local OmniGen2 checkpoint folder" in line for line in lines)


# --- pure logic -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tok():
    from transformers import PreTrainedTokenizerFast

    tok_dir = Path(og2.__file__).resolve().parents[1] / "assets" / "synthworld" / "tokenizer"
    t = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    t.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    t.chat_template = CHATML
    return t


def test_instruction_is_the_pipeline_chat_template(tok):
    text = build_instruction(tok, "a red zib")
    assert text == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\na red zib<|im_end|>\n"
    assert og2.SYSTEM_PROMPT == SYSTEM
    assert not text.endswith("assistant\n")  # add_generation_prompt=False, as the pipeline


def test_end_aligned_layout():
    ids = torch.tensor([[5, 6, 7, 0, 0], [1, 2, 3, 4, 9]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    off = torch.arange(20).view(2, 5, 2)
    out_ids, out_mask, pos, out_off, index = end_aligned(ids, mask, off, pad_id=0)
    assert out_ids.tolist() == [[0, 0, 5, 6, 7, 0, 0], [1, 2, 3, 4, 9, 0, 0]]
    assert out_mask.tolist() == [[0, 0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0]]
    assert pos[0, 2:5].tolist() == [0, 1, 2] and pos[1, :5].tolist() == [0, 1, 2, 3, 4]
    assert index.tolist() == [[2, 3, 4, 5, 6], [0, 1, 2, 3, 4]]
    assert (out_ids[:, 4] != 0).all()  # every row's last real token in one column
    assert out_off[0, 2].tolist() == [0, 1] and out_off[0, 5].tolist() == [0, 0]


# --- the adapter on a tiny Qwen2.5-VL with stand-ins ------------------------------------------------

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
    """The interface of ``OmniGen2Transformer2DModel.forward`` (not its computation)."""

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
    ``padding="longest"``, ``hidden_states[-1]``), with a toy sampler and decoder."""

    def __init__(self, mllm, tokenizer, transformer):
        self.mllm = mllm
        self.processor = SimpleNamespace(tokenizer=tokenizer)
        self.transformer = transformer
        self.default_sample_size = 4
        self.vae_scale_factor = 8
        self.calls = []

    def _apply_chat_template(self, prompt):
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
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

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, max_sequence_length=None, num_inference_steps=28,
                 text_guidance_scale=4.0, generator=None, output_type="pil", height=None, width=None):
        from diffusers.utils.torch_utils import randn_tensor

        self.calls.append({"prompt": list(prompt), "steps": num_inference_steps, "guidance": text_guidance_scale,
                           "generator": generator, "output_type": output_type,
                           "max_sequence_length": max_sequence_length})
        emb, mask, neg, neg_mask = self.encode_prompt(prompt, text_guidance_scale > 1.0, negative_prompt,
                                                      device=self.mllm.device, max_sequence_length=max_sequence_length)
        side = (height or self.default_sample_size * self.vae_scale_factor) // self.vae_scale_factor
        B = len(prompt)
        x = randn_tensor((B, self.transformer.config.in_channels, side, side), generator=generator,
                         device=self.mllm.device, dtype=emb.dtype)
        ts = torch.linspace(0, 1, num_inference_steps + 1)
        for t, t_next in zip(ts[:-1], ts[1:]):
            v = self.transformer(x, t.expand(B), emb, [torch.zeros(1)], mask, ref_image_hidden_states=[None] * B)
            if text_guidance_scale > 1.0:
                u = self.transformer(x, t.expand(B), neg, [torch.zeros(1)], neg_mask,
                                     ref_image_hidden_states=[None] * B)
                v = u + text_guidance_scale * (v - u)
            x = x + (t_next - t) * v
        img = torch.sigmoid(x[:, :3]).repeat_interleave(self.vae_scale_factor, 2).repeat_interleave(
            self.vae_scale_factor, 3)
        return SimpleNamespace(images=img.permute(0, 2, 3, 1).float().numpy())


@pytest.fixture(scope="module")
def adapter(tok):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    n = len(tok)
    cfg = Qwen2_5_VLConfig(
        text_config={"vocab_size": n, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
                     "rope_scaling": {"mrope_section": [4, 6, 6], "rope_type": "default", "type": "default"},
                     "tie_word_embeddings": True, "pad_token_id": tok.pad_token_id,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 64},
        vocab_size=n, tie_word_embeddings=True,
        image_token_id=n + 10, video_token_id=n + 11, vision_start_token_id=n + 12, vision_end_token_id=n + 13,
    )
    mllm = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    pipe = StandInPipeline(mllm, tok, StandInTransformer().eval())
    def freqs(axes_dim, axes_lens, theta):  # stands in for OmniGen2RotaryPosEmbed.get_freqs_cis
        return [torch.zeros(e, d // 2) for d, e in zip(axes_dim, axes_lens)]

    return OmniGen2Adapter("omnigen2:tiny", pipe, device=torch.device("cpu"), dtype=torch.float32,
                           freqs_cis_fn=freqs)


def test_paths_and_text(adapter):
    a = adapter
    assert a.lm is a.pipe.mllm and type(a.lm).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert text_decoder_prefix(a.lm) == "model.language_model" and a.paths == decoder_paths("model.language_model")
    assert a.num_layers == 4 and a.hidden_size == 64 and a.edit_layers == [0, 1] and a.family == "llama"
    for layer in range(a.num_layers):
        for name in ("layer", "mlp", "mlp_down", "mlp_up", "attn"):
            assert isinstance(a.module(getattr(a.paths, name).format(layer)), torch.nn.Module)
    for name in ("layers", "final_norm", "embed", "lm_head"):
        assert isinstance(a.module(getattr(a.paths, name)), torch.nn.Module)
    assert a.edit_module_template == "model.language_model.layers.{}.mlp.down_proj"
    assert a.tokenizer.padding_side == "left" and a.pipe.processor.tokenizer.padding_side == "right"
    assert a.tokenizer is not a.pipe.processor.tokenizer
    out = a.generate_text(["The color of the zib is", "a"], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    logits = a.next_token_logits(["The color of the zib is", "a"])
    with torch.no_grad():  # left padding + explicit positions = the prompt alone
        enc = a.tokenizer(["The color of the zib is"], return_tensors="pt")
        want = a.lm(**enc).logits[:, -1]
    torch.testing.assert_close(logits[:1], want, rtol=0, atol=1e-5)
    trace = a.trace_module()
    for site in a.sites():
        trace.get_submodule(site.module)
    names = [s.name for s in a.sites()]
    assert names[:2] == ["text.mlp.0", "text.resid.0"]
    assert [n for n in names if n.startswith("cond.")] == ["cond.tensor", "cond.connector_out", "cond.refiner.0"]
    assert [n for n in names if n.startswith("gen.")] == ["gen.block.0", "gen.block.1"]


def test_conditioning_is_what_the_pipeline_encodes(adapter, tok):
    a = adapter
    cond = a.conditioning(PROMPTS)
    # independently: the chat template, right padding to the longest, the mllm's hidden_states[-1]
    texts = [f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{p}<|im_end|>\n" for p in PROMPTS]
    tok_r = a.pipe.processor.tokenizer
    enc = tok_r(texts, padding="longest", return_tensors="pt")
    assert (enc.attention_mask[:, 0] == 1).all() and enc.attention_mask[0, -1] == 0  # right padding
    with torch.no_grad():
        want = a.lm(enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True).hidden_states[-1]
        last = a.lm.model.language_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
    torch.testing.assert_close(want, last, rtol=0, atol=1e-6)  # hidden_states[-1] is the final-norm output
    assert torch.equal(cond.hidden, want) and torch.equal(cond.mask, enc.attention_mask)
    n = enc.attention_mask.sum(1)
    for b in range(2):
        assert cond.lm_positions[b, : n[b]].tolist() == list(range(int(n[b])))
        assert (cond.lm_positions[b, n[b]:] == -1).all()
    # the system message comes before the user's prompt
    assert a.prompt_prefix() == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
    assert a.conditioning([]).hidden.shape[0] == 0
    # the trace module reproduces it, and hands it to the transformer as positional argument 2 (mask: 4)
    args, extra = a.trace_inputs(PROMPTS, seed=0)
    trace = a.trace_module()
    trace.transformer.calls.clear()
    with torch.no_grad():
        sample, traced = trace(*args)
    real = cond.mask.bool()
    torch.testing.assert_close(traced.hidden[real], cond.hidden[real], rtol=0, atol=1e-5)
    assert torch.equal(traced.mask, cond.mask)
    call = trace.transformer.calls[-1]
    assert call["text"] is traced.hidden and torch.equal(call["mask"], cond.mask)
    assert call["ref"] == [None, None] and len(call["freqs_cis"]) == 3
    assert sample.shape == (2, 4, a.trace_latent_size, a.trace_latent_size)
    ids = extra["input_ids"]
    assert (ids[:, -1] == ids[0, -1]).all()  # every row ends in the template's last token, at T - 1
    T = ids.shape[1]
    for b in range(2):  # lm_positions index the end-aligned columns of the prompt part
        pos = traced.lm_positions[b][real[b]]
        assert pos.max().item() == T - 1


def test_images_seeded_batched_and_passed_through(adapter):
    a = adapter
    a.pipe.calls.clear()
    imgs = a.generate_images(PROMPTS, seed=3, steps=2)
    assert imgs.shape == (2, 32, 32, 3) and imgs.dtype == np.uint8
    call = a.pipe.calls[-1]
    assert call["steps"] == 2 and call["guidance"] == a.guidance == 4.0 and call["output_type"] == "np"
    assert call["max_sequence_length"] is None
    gens = call["generator"]
    assert len(gens) == 2 and all(g.device.type == "cpu" for g in gens)
    assert all(torch.equal(g.get_state(), gens[0].get_state()) for g in gens)  # one seed, one generator each
    np.testing.assert_array_equal(a.generate_images(PROMPTS, seed=3, steps=2), imgs)
    alone = np.concatenate([a.generate_images([p], seed=3, steps=2) for p in PROMPTS])
    assert np.abs(alone.astype(int) - imgs.astype(int)).max() <= 1  # batch padding: float rounding at most
    assert not np.array_equal(a.generate_images(PROMPTS[:1], seed=4, steps=2), imgs[:1])
    assert a.generate_images([], seed=3).shape == (0, 32, 32, 3)
    a.pipeline_kwargs = {"height": 16, "width": 16}
    try:
        assert a.generate_images(PROMPTS[:1], seed=3, steps=1).shape == (1, 16, 16, 3)
        assert a.generate_images([], seed=3).shape == (0, 16, 16, 3)
    finally:
        a.pipeline_kwargs = {}


def test_weight_edit_reaches_conditioning_and_image(adapter):
    a = adapter
    base = a.generate_images(PROMPTS[:1], seed=1, steps=2)
    cond0 = a.conditioning(PROMPTS[:1]).hidden
    path = a.edit_module_template.format(a.edit_layers[0])
    applied = random_delta(a, path, 2.0, 0).apply(a.lm)
    try:
        assert not torch.equal(a.conditioning(PROMPTS[:1]).hidden, cond0)
        edited = a.generate_images(PROMPTS[:1], seed=1, steps=2)
    finally:
        applied.remove()
    assert np.abs(edited.astype(int) - base.astype(int)).max() > 0
    np.testing.assert_array_equal(a.generate_images(PROMPTS[:1], seed=1, steps=2), base)
    assert torch.equal(a.conditioning(PROMPTS[:1]).hidden, cond0)


def test_recorder(adapter):
    from unike_interp.interp.recorder import Recorder

    a = adapter
    prompts = PROMPTS + ["a small striped circle"]
    subjects = ["zib", "zab", "zib"]
    r = Recorder(a)
    rec = r.record(prompts, subjects)
    cond = a.conditioning(prompts)
    keep = cond.mask.bool().numpy()
    np.testing.assert_array_equal(rec.cond_mask.astype(bool), keep)
    np.testing.assert_allclose(rec.values["cond.tensor"][keep], cond.hidden.numpy()[keep], rtol=0, atol=1e-5)
    assert rec.values["cond.connector_out"].shape == (3, keep.shape[1], 32)
    assert rec.values["gen.block.1"].shape[0] == 3
    # text sites at the prompt's last token equal the decoder on the instruction alone
    for b, p in enumerate(prompts):
        enc = a.pipe.processor.tokenizer([a.instruction(p)], return_tensors="pt")
        with torch.no_grad():
            hs = a.lm(**enc, output_hidden_states=True).hidden_states
        for i in range(a.num_layers - 1):
            np.testing.assert_allclose(rec.values[f"text.resid.{i}"][b, 1], hs[i + 1][0, -1].numpy(), rtol=0, atol=1e-4)
    assert rec.token_positions[2, 0] == -1 and np.isnan(rec.values["text.resid.0"][2, 0]).all()
    args, extra = a.trace_inputs(prompts)
    for b, subj in enumerate(subjects[:2]):
        at = int(rec.token_positions[b, 0])
        assert int(extra["input_ids"][b][at]) == a.tokenizer(" " + subj, add_special_tokens=False)["input_ids"][-1]
    # an edit as an activation intervention equals the same edit in the weights
    path = a.edit_module_template.format(a.edit_layers[0])
    d = random_delta(a, path, 0.5, 1)
    assert_intervention_equals_weight_edit(r, a.lm, prompts, subjects, d, rec)

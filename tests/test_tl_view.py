"""The TransformerLens view of the shipped SynthWorld LM equals the HF model, hook for hook."""

import pytest
import torch

pytest.importorskip("transformer_lens")

from unike_interp.interp.tl_view import rope_theta, tl_hook_names, to_hooked_transformer  # noqa: E402

PROMPTS = ["The color of the drumida is", "The shape of the zib is", "a"]
TOL = 1e-4


@pytest.fixture(scope="module")
def adapter():
    from unike_interp.models import load_model

    return load_model("toy-direct")


@pytest.fixture(scope="module")
def view(adapter):
    return to_hooked_transformer(adapter)


def _ids(adapter, prompt):
    return adapter.tokenizer(prompt, return_tensors="pt")["input_ids"].to(adapter.device)


def _hf_sites(lm, ids):
    """HF outputs plus per-layer module outputs captured with forward hooks on ``lm``."""
    layers = lm.model.layers
    got, handles = {}, []

    def keep(name, take_input=False):
        def hook(module, args, output):
            got[name] = (args[0] if take_input else (output[0] if isinstance(output, tuple) else output)).detach()
        return hook

    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(keep(f"layer.{i}")))
        handles.append(layer.mlp.register_forward_hook(keep(f"mlp_out.{i}")))
        handles.append(layer.mlp.down_proj.register_forward_hook(keep(f"mlp_post.{i}", take_input=True)))
        handles.append(layer.input_layernorm.register_forward_hook(keep(f"ln1.{i}")))
        handles.append(layer.post_attention_layernorm.register_forward_hook(keep(f"ln2.{i}")))
        handles.append(layer.self_attn.register_forward_hook(keep(f"attn_out.{i}")))
    try:
        with torch.no_grad():
            out = lm(input_ids=ids, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return out, got


def test_config_matches_hf(adapter, view):
    hf = adapter.lm.config
    cfg = view.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_mlp, cfg.d_vocab) == (
        hf.num_hidden_layers, hf.hidden_size, hf.num_attention_heads, hf.intermediate_size, hf.vocab_size)
    assert cfg.d_head == hf.hidden_size // hf.num_attention_heads
    assert cfg.normalization_type == "RMS" and cfg.positional_embedding_type == "rotary"
    assert cfg.gated_mlp and cfg.final_rms and cfg.tie_word_embeddings == hf.tie_word_embeddings
    assert cfg.original_architecture == "Qwen2ForCausalLM"
    assert float(cfg.rotary_base) == rope_theta(hf) == 10000.0
    assert cfg.eps == hf.rms_norm_eps


def test_rope_theta_reads_every_layout():
    from types import SimpleNamespace as NS

    assert rope_theta(NS(rope_parameters={"rope_theta": 5e5, "rope_type": "default"})) == 5e5
    assert rope_theta(NS(rope_parameters={"full_attention": {"rope_theta": 1e6}})) == 1e6
    assert rope_theta(NS(rope_scaling={"rope_theta": 2e4, "rope_type": "linear"})) == 2e4
    assert rope_theta(NS(rope_scaling={"type": "linear", "factor": 2.0}, rope_theta=3e4)) == 3e4
    assert rope_theta(NS(rope_theta=1e4)) == 1e4
    assert rope_theta(NS()) is None


@pytest.fixture(scope="module")
def lm_eager(adapter):
    """The same HF model run with eager attention (the view's attention core is eager)."""
    import copy

    lm = copy.deepcopy(adapter.lm)
    lm.set_attn_implementation("eager")
    return lm


def test_adapter_lm_left_untouched(adapter, view):
    lm = adapter.lm
    assert type(lm.model.layers[0].mlp).__name__ == "Qwen2MLP"  # no bridge wrappers spliced in
    assert lm.config._attn_implementation == "sdpa"  # the view's copy is eager, not adapter.lm
    assert view.original_model is not lm
    # ...yet the view's weights are the very same tensors.
    w = lm.model.layers[0].mlp.down_proj.weight
    assert view.original_model.model.layers[0].mlp.down_proj.weight is w
    assert view.original_model.lm_head.weight is view.original_model.model.embed_tokens.weight


def test_tokens_match_our_tokenizer(adapter, view):
    for prompt in PROMPTS:
        ids = _ids(adapter, prompt)
        assert ids[0, 0].item() == adapter.tokenizer.bos_token_id
        assert (ids == adapter.tokenizer.bos_token_id).sum().item() == 1
        assert torch.equal(view.to_tokens(prompt), ids)  # exactly one BOS, as in training


def _compare(view, lm, prompts, n):
    """Max abs differences view vs ``lm`` per site, over ``prompts`` (unpadded, one at a time)."""
    names = tl_hook_names(n)
    sites = ["logits", "embed", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_post", "mlp_out",
             "ln1", "ln2", "ln_final"]
    worst = dict.fromkeys(sites, 0.0)
    for prompt in prompts:
        ids = view.to_tokens(prompt)
        out, hf = _hf_sites(lm, ids)
        hs = out.hidden_states
        assert len(hs) == n + 1
        with torch.no_grad():
            logits, cache = view.run_with_cache(ids)
            logits_from_text = view(prompt)
        assert logits.shape == out.logits.shape
        # HF hidden_states[i + 1] is layer i's output, except the last entry, which
        # transformers 5.24 takes AFTER the final norm: the last layer is compared with the
        # decoder layer's own output, and hidden_states[-1] with ln_final.hook_out.
        assert (hs[n] - hf[f"layer.{n - 1}"]).abs().max().item() > 1.0
        assert torch.allclose(lm.model.norm(hf[f"layer.{n - 1}"]), hs[n])
        diffs = {
            "logits": max((logits - out.logits).abs().max().item(), (logits_from_text - out.logits).abs().max().item()),
            "embed": (cache[names["embed"]] - hs[0]).abs().max().item(),
            "ln_final": (cache[names["ln_final"]] - hs[n]).abs().max().item(),
        }
        assert set(names.values()) <= set(cache.keys())
        assert torch.equal(cache[names["logits"]], logits)

        def upd(key, a, b):
            diffs[key] = max(diffs.get(key, 0.0), (a - b).abs().max().item())

        for i in range(n):
            resid_in = hs[i]
            upd("resid_pre", cache[names[f"resid_pre.{i}"]], resid_in)
            upd("resid_mid", cache[names[f"resid_mid.{i}"]], resid_in + hf[f"attn_out.{i}"])
            upd("resid_post", cache[names[f"resid_post.{i}"]], hs[i + 1] if i < n - 1 else hf[f"layer.{i}"])
            for site in ("attn_out", "mlp_post", "mlp_out", "ln1", "ln2"):
                upd(site, cache[names[f"{site}.{i}"]], hf[f"{site}.{i}"])
        assert cache[names["pattern.0"]].shape == (1, lm.config.num_attention_heads, ids.shape[1], ids.shape[1])
        for key, d in diffs.items():
            worst[key] = max(worst[key], d)
    return worst


def test_logits_and_hooks_match_hf_eager(adapter, view, lm_eager):
    """Same attention kernel on both sides: every hook equals the HF activation."""
    worst = _compare(view, lm_eager, PROMPTS, adapter.num_layers)
    print("\nmax abs diff, view vs HF (eager attention, float32):", worst)
    for key, diff in worst.items():
        assert diff < TOL, (key, diff)


def test_logits_and_hooks_match_adapter_lm(adapter, view, lm_eager):
    """Against adapter.lm as loaded (sdpa): logits within 1e-4 absolute; residual entries
    reach ~900, where 1e-4 is under 2 float32 ulps, so residuals are held to 1e-6 relative
    to the residual's scale -- and the view's gap is exactly HF's own sdpa-vs-eager gap."""
    n = adapter.num_layers
    worst = _compare(view, adapter.lm, PROMPTS, n)
    print("\nmax abs diff, view vs adapter.lm (sdpa attention, float32):", worst)
    assert worst["logits"] < TOL
    assert worst["embed"] == 0.0
    scale = 0.0
    for prompt in PROMPTS:
        ids = view.to_tokens(prompt)
        with torch.no_grad():
            sdpa = adapter.lm(input_ids=ids, output_hidden_states=True).hidden_states
            eager = lm_eager(input_ids=ids, output_hidden_states=True).hidden_states
            _, cache = view.run_with_cache(ids)
        scale = max(scale, max(h.abs().max().item() for h in sdpa))
        for i in range(n - 1):  # view == HF eager, so view - HF sdpa == HF eager - HF sdpa
            assert torch.equal(cache[f"blocks.{i}.hook_resid_post"] - sdpa[i + 1], eager[i + 1] - sdpa[i + 1])
    for key in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_post", "mlp_out", "ln1", "ln2", "ln_final"):
        assert worst[key] < 1e-6 * scale, (key, worst[key], scale)


def test_equal_length_batch(adapter, view):
    prompts = ["The color of the drumida is", "The shape of the drumida is"]
    enc = adapter.tokenizer(prompts, return_tensors="pt", padding=True)
    assert bool(enc["attention_mask"].all())  # equal lengths: no padding in the batch
    ids = enc["input_ids"].to(adapter.device)
    with torch.no_grad():
        ref = adapter.lm(input_ids=ids).logits
        assert (view(ids) - ref).abs().max().item() < TOL


def test_in_place_weight_edit_is_seen(adapter, view):
    lm = adapter.lm
    ids = _ids(adapter, PROMPTS[0])
    w = lm.model.layers[0].mlp.down_proj.weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.add_(0.05 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)).to(w))
            edited = lm(input_ids=ids).logits
            assert (edited - view(ids)).abs().max().item() < TOL  # the existing view sees it
            fresh = to_hooked_transformer(adapter)
            assert (edited - fresh(ids)).abs().max().item() < TOL  # and so does a new one
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert torch.equal(w, saved)
    with torch.no_grad():
        assert (view(ids) - lm(input_ids=ids).logits).abs().max().item() < TOL


def test_hooks_on_view_do_not_touch_hf(adapter, view):
    ids = _ids(adapter, PROMPTS[0])
    with torch.no_grad():
        ref = adapter.lm(input_ids=ids).logits
        zeroed = view.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_mlp_out", lambda t, hook: torch.zeros_like(t))])
        assert (zeroed - ref).abs().max().item() > 1e-3  # the hook acted in the view...
        assert torch.equal(adapter.lm(input_ids=ids).logits, ref)  # ...and not in the HF model


def test_snapshot_when_dtype_differs(adapter):
    lm = adapter.lm
    before = {name: p for name, p in lm.named_parameters()}
    v64 = to_hooked_transformer(adapter, dtype=torch.float64)
    assert next(v64.original_model.parameters()).dtype == torch.float64
    assert all(p is before[name] and p.dtype == torch.float32 for name, p in lm.named_parameters())
    assert v64.original_model.lm_head.weight is v64.original_model.model.embed_tokens.weight  # still tied
    ids = _ids(adapter, PROMPTS[0])
    w = lm.model.layers[0].mlp.down_proj.weight
    saved = w.detach().clone()
    with torch.no_grad():
        ref = lm(input_ids=ids).logits
        assert (v64(ids).float() - ref).abs().max().item() < TOL
        try:  # a snapshot: an in-place edit of adapter.lm is not seen
            w.add_(1.0)
            assert (v64(ids).float() - ref).abs().max().item() < TOL
        finally:
            w.copy_(saved)


def test_tl_hook_names():
    names = tl_hook_names(2)
    assert names["resid_post.1"] == "blocks.1.hook_resid_post"
    assert names["resid.0"] == "blocks.0.hook_resid_post"
    assert names["mlp_out.0"] == "blocks.0.hook_mlp_out"
    assert names["attn_out.1"] == "blocks.1.hook_attn_out"
    assert "resid_post.2" not in names
    with pytest.raises(ValueError):
        tl_hook_names(0)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_tiny_random_gqa_models(family):
    """Grouped-query attention and the Llama family, on tiny randomly initialised models."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[family]
    config = config_cls(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                        rope_parameters={"rope_theta": 5e5, "rope_type": "default"}, tie_word_embeddings=False,
                        attn_implementation="eager")
    torch.manual_seed(0)
    lm = model_cls(config).eval()
    view = to_hooked_transformer(lm)
    assert not view.compatibility_mode  # no fold_ln / centering
    assert view.cfg.n_key_value_heads == 2 and float(view.cfg.rotary_base) == 5e5
    ids = torch.randint(3, 64, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = lm(input_ids=ids, output_hidden_states=True)
        logits, cache = view.run_with_cache(ids)
    assert (logits - out.logits).abs().max().item() < TOL
    assert (cache["blocks.0.hook_resid_post"] - out.hidden_states[1]).abs().max().item() < TOL

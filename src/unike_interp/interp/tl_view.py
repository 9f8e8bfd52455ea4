"""A TransformerLens view of a Qwen2/Llama-style causal LM, over the same weights.

``to_hooked_transformer(adapter)`` gives an object with TransformerLens's hook names
(``blocks.{i}.hook_resid_post``, ``blocks.{i}.hook_mlp_out``, ``run_with_cache``,
``run_with_hooks``, ...) whose activations are the HF model's own activations.

Why a ``TransformerBridge`` and not a ``HookedTransformer``
-----------------------------------------------------------
TransformerLens 4.x (4.3.0 is installed) removed ``HookedTransformer`` and
``HookedTransformerConfig``: ``from transformer_lens import HookedTransformer`` raises an
``ImportError`` pointing at ``TransformerBridge``, and the per-architecture
``pretrained/weight_conversions`` (``convert_qwen2_weights``) are gone with it. The only
supported way to get TL hook names in 4.x is ``TransformerBridge``, which wraps the HF
module tree itself (each HF submodule becomes a bridge component holding the original
module) and runs HF's own modules (embedding, norms, q/k/v/o and MLP projections, rotary
embedding), with HookPoints around each; only the attention core (scores, softmax,
weighted sum) is recomputed by the bridge, eagerly, so that ``hook_pattern`` fires. So this
module returns a :class:`transformer_lens.model_bridge.TransformerBridge` (the name
``to_hooked_transformer`` is kept for callers that think in TL-3 terms), built with the
library's public loader for pre-loaded modules,
:func:`transformer_lens.model_bridge.sources.build_bridge_from_module` — never
``boot_transformers`` with a hub name, so nothing is downloaded. The config comes from the
HF config through TL's own translation (``build_bridge_config_from_hf``: n_layers,
d_model, n_heads, n_key_value_heads, d_head, d_mlp, d_vocab, n_ctx, act_fn, RMS norm,
rotary positions, rotary_base, eps, gated MLP, final RMS, tied embeddings), and
:func:`to_hooked_transformer` checks those fields against its own reading of the HF
config and raises on any disagreement. One field is corrected rather than checked:
TL 4.3.0 reads only a top-level ``rope_theta``, which transformers 5 configs no longer have
(they keep it in ``rope_parameters``), so TL leaves ``rotary_base`` at its 10000 default;
:func:`rope_theta` reads ``rope_parameters``, ``rope_scaling`` or ``rope_theta``, whichever
the transformers version wrote, and the view's ``cfg.rotary_base`` is set from it. (The
forward pass never used the wrong value: it runs HF's own rotary embedding.) Qwen2's
attention biases (q/k/v with bias, o without) need no conversion: the view runs the HF
``Linear`` modules themselves.

No weight processing: ``enable_compatibility_mode`` (fold_ln / center_writing_weights /
center_unembed / fold_value_biases) is NOT called, so hook values are the HF model's
internal activations, not HookedTransformer's refactored basis. (The bridge's default
forward already exposes the legacy aliases ``hook_resid_pre/mid/post``,
``hook_attn_out``, ``hook_mlp_out``, ``hook_embed``.)

Same weights, separate module tree
----------------------------------
``build_bridge_from_module`` edits the module tree it is given in place (bridge components
replace its submodules). To leave ``adapter.lm`` untouched for the rest of the toolkit
(editors, tracing, generation), the view wraps a *structural* copy of the LM whose
parameters and buffers are the very same tensors as ``adapter.lm``'s (a deepcopy with every
parameter and buffer pre-seeded in the memo). Hence:

- an in-place weight edit on the HF model (``w.add_(delta)``, ``w.copy_(new)``, ROME/MEMIT
  updates written into ``.data``) is seen by the view at once, without rebuilding;
- an edit that *replaces* a parameter object (``module.weight = nn.Parameter(...)``) or a
  module is not seen: rebuild the view after such an edit;
- when ``device``/``dtype`` differ from the LM's, the view's copy is moved/cast, which
  makes new tensors: then the view is a **snapshot; rebuild after an edit**.

Hooks added through the view (``run_with_hooks``, ``add_hook``) live on the copy and never
fire in ``adapter.lm``.

BOS and tokens
--------------
Our SynthWorld tokenizer prepends ``<|bos|>`` itself (the LM was trained with it). TL's
Qwen2 adapter sets ``cfg.default_prepend_bos = False`` (real Qwen tokenizers have no BOS),
which, combined with a BOS-prepending tokenizer, would make ``view.to_tokens(text)`` strip
the BOS. When a tokenizer is given, the view sets ``cfg.default_prepend_bos`` to whether
the tokenizer prepends BOS, so ``view.to_tokens(text)`` equals
``tokenizer(text)["input_ids"]`` and ``view(text)`` sees exactly one BOS. The robust way
is to tokenize with our tokenizer and pass the ids::

    ids = adapter.tokenizer(prompt, return_tensors="pt")["input_ids"].to(adapter.device)
    logits, cache = view.run_with_cache(ids)      # ids already start with BOS
    cache["blocks.0.hook_resid_post"]             # == HF hidden_states[1]

A token tensor is passed through unchanged (TL adds nothing to it). Use single prompts
or equal-length batches: a token tensor carries no attention mask, so left padding
would be attended to. The tokenizer handed to TL is a copy; ``adapter.tokenizer`` is not
modified.

Hidden-state correspondence (Qwen2, transformers 5.24)
-----------------------------------------------------
``hidden_states = lm(ids, output_hidden_states=True).hidden_states`` has ``n_layers + 1``
entries: ``[0]`` is the embedding output (``hook_embed`` = ``blocks.0.hook_resid_pre``) and
``[i + 1]`` is layer ``i``'s output = ``blocks.{i}.hook_resid_post`` for ``i < n_layers - 1``.
The LAST entry is taken AFTER the final norm (``model.norm``): it equals the view's
``ln_final.hook_out``, while ``blocks.{n_layers - 1}.hook_resid_post`` is the last decoder
layer's raw output (capture ``model.layers[-1]``'s forward output on the HF side to compare).

Numerics
--------
The bridge computes the attention core itself, eagerly (so ``hook_attn_scores`` /
``hook_pattern`` fire), whatever the HF model's ``attn_implementation``; the copy's config is set to
``"eager"`` to say so, and ``adapter.lm`` keeps its own (``sdpa`` by default). Measured on
the shipped SynthWorld LM in float32 (tests/test_tl_view.py):

- against the HF model run with ``attn_implementation="eager"``: bit-identical logits and
  residuals (max abs difference 0);
- against ``adapter.lm`` as loaded (``sdpa``): logits within ~8e-6, residuals within
  ~1.8e-4 absolute at the last layer, where the residual's entries reach ~900 (3 float32
  ulps; relative ~2e-7). That is exactly HF-eager vs HF-sdpa, i.e. the HF model's own
  kernel-order difference, not a TL approximation.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["to_hooked_transformer", "tl_hook_names", "rope_theta"]


def rope_theta(hf_config) -> float | None:
    """The rotary base of an HF config, wherever the transformers version keeps it.

    transformers 5 writes ``rope_parameters = {"rope_theta": ..., "rope_type": ...}``
    (possibly nested per layer type, e.g. ``{"full_attention": {...}}``); 4.x kept
    ``rope_theta`` at the top level and sometimes a ``rope_scaling`` dict.
    """
    for attr in ("rope_parameters", "rope_scaling"):
        params = getattr(hf_config, attr, None)
        if isinstance(params, dict):
            if "rope_theta" in params:
                return float(params["rope_theta"])
            for sub in params.values():  # per-layer-type nesting
                if isinstance(sub, dict) and "rope_theta" in sub:
                    return float(sub["rope_theta"])
    theta = getattr(hf_config, "rope_theta", None)
    return float(theta) if theta is not None else None


def _expected_cfg(hf_config) -> dict[str, Any]:
    """The TL config fields this view relies on, read directly from the HF config."""
    n_heads = int(hf_config.num_attention_heads)
    d_head = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // n_heads
    expected = {
        "n_layers": int(hf_config.num_hidden_layers),
        "d_model": int(hf_config.hidden_size),
        "n_heads": n_heads,
        "n_key_value_heads": int(getattr(hf_config, "num_key_value_heads", None) or n_heads),
        "d_head": int(d_head),
        "d_mlp": int(hf_config.intermediate_size),
        "d_vocab": int(hf_config.vocab_size),
        "n_ctx": int(hf_config.max_position_embeddings),
        "act_fn": str(hf_config.hidden_act),
        "eps": float(hf_config.rms_norm_eps),
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "gated_mlp": True,
        "final_rms": True,
        "tie_word_embeddings": bool(getattr(hf_config, "tie_word_embeddings", False)),
    }
    theta = rope_theta(hf_config)
    if theta is not None:
        expected["rotary_base"] = theta
    return expected


def _unwrap(adapter_or_lm, tokenizer):
    lm = getattr(adapter_or_lm, "lm", adapter_or_lm)
    if tokenizer is None:
        tokenizer = getattr(adapter_or_lm, "tokenizer", None)
    if not isinstance(lm, torch.nn.Module) or not hasattr(lm, "config"):
        raise TypeError(f"expected an adapter with .lm or an HF causal LM, got {type(adapter_or_lm).__name__}")
    return lm, tokenizer


def _same_device(have: torch.device, want: torch.device) -> bool:
    return have.type == want.type and (want.index is None or have.index == want.index)


def _structural_copy(lm: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A deep copy of ``lm``'s module tree, with its parameters and buffers mapped through the memo.

    A tensor already on ``device`` (and, if floating point, in ``dtype``) is the copy's tensor
    itself (shared storage, same ``Parameter`` object); any other one is converted into a new
    tensor (like ``Module.to``: floating-point tensors take ``dtype``, the rest only move).
    Tied weights stay tied (the memo is keyed by object). ``Module.to`` is not used on the copy:
    it converts shared parameters in place (``param.data = ...``) and would cast ``lm`` too.
    """
    memo: dict[int, Any] = {}

    def convert(t: torch.Tensor) -> torch.Tensor:
        want = dtype if t.is_floating_point() else t.dtype
        if _same_device(t.device, device) and t.dtype == want:
            return t
        new = t.detach().to(device=device, dtype=want)
        if isinstance(t, torch.nn.Parameter):
            return torch.nn.Parameter(new, requires_grad=t.requires_grad)
        return new

    for t in list(lm.parameters()) + list(lm.buffers()):
        if id(t) not in memo:
            memo[id(t)] = convert(t)
    return copy.deepcopy(lm, memo)


def to_hooked_transformer(adapter_or_lm, tokenizer=None, *, device=None, dtype=None):
    """A TransformerLens ``TransformerBridge`` over the LM of an adapter (or an HF causal LM).

    Args:
        adapter_or_lm: a :class:`~unike_interp.models.base.UMMAdapter` (its ``.lm`` and
            ``.tokenizer`` are used) or a ``Qwen2ForCausalLM`` / ``LlamaForCausalLM``.
        tokenizer: overrides the adapter's tokenizer (a copy is handed to TL).
        device, dtype: default to the adapter's (or the LM's parameters'). If they differ
            from where the LM's weights live, the view holds moved/cast copies: a snapshot.

    Returns:
        ``transformer_lens.model_bridge.TransformerBridge`` with TL hook names and no weight
        processing; its weights are ``adapter.lm``'s own tensors (see the module docstring).
    """
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformer_lens.model_bridge.sources._bridge_builder import detect_tokenizer_bos_eos

    lm, tokenizer = _unwrap(adapter_or_lm, tokenizer)
    hf_config = lm.config
    architecture = (getattr(hf_config, "architectures", None) or [type(lm).__name__])[0]

    param = next(lm.parameters())
    device = torch.device(device if device is not None else getattr(adapter_or_lm, "device", param.device))
    dtype = dtype if dtype is not None else getattr(adapter_or_lm, "dtype", param.dtype)

    model = _structural_copy(lm, device, dtype)
    model.eval()
    # Eager attention on the copy only, so attention-pattern hooks fire; adapter.lm keeps its own.
    model.config._attn_implementation = "eager"
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except Exception:  # older/newer transformers: the config attribute above is enough
            pass

    # Tokenizer attached after construction: build_bridge_from_module's tokenizer setup
    # may reload the tokenizer from its name_or_path (a hub lookup for in-memory ones).
    view = build_bridge_from_module(
        model, architecture, hf_config=model.config, tokenizer=None, dtype=dtype, device=device,
        model_name=str(getattr(hf_config, "_name_or_path", "") or "external"),
    )

    cfg = view.cfg
    cfg.original_architecture = architecture
    expected = _expected_cfg(hf_config)
    # TL 4.3.0's HF-config translation reads only a top-level ``rope_theta``; transformers 5
    # keeps it in ``rope_parameters``, so TL silently falls back to 10000. The forward pass is
    # unaffected (it runs HF's own rotary embedding); fix the config for TL's utilities.
    if "rotary_base" in expected:
        theta = expected["rotary_base"]
        cfg.rotary_base = int(theta) if float(theta).is_integer() else theta
    wrong = {}
    for key, want in expected.items():
        got = getattr(cfg, key, None)
        if key == "n_key_value_heads" and got is None:
            ok = want == expected["n_heads"]  # TL writes None for plain multi-head attention
        elif isinstance(want, float):
            ok = got is not None and abs(float(got) - want) <= 1e-12 * max(1.0, abs(want))
        else:
            ok = got == want
        if not ok:
            wrong[key] = (got, want)
    if wrong:
        raise ValueError(f"TransformerLens config disagrees with the HF config ({architecture}): "
                         + ", ".join(f"{k}: TL {g!r} vs HF {w!r}" for k, (g, w) in wrong.items()))

    if tokenizer is not None:
        tok = copy.deepcopy(tokenizer)
        view.tokenizer = tok  # first assignment: no reload, only d_vocab bookkeeping
        view._driver.tokenizer = tok
        cfg.tokenizer_prepends_bos, cfg.tokenizer_appends_eos = detect_tokenizer_bos_eos(tok)
        cfg.default_prepend_bos = bool(cfg.tokenizer_prepends_bos)
    return view


def tl_hook_names(n_layers: int) -> dict[str, str]:
    """Our stable site names -> TransformerLens hook names (all fire in ``run_with_cache``).

    Per layer ``i``:

    - ``resid_pre.{i}``: input of ``model.layers.{i}`` (``hidden_states[i]``);
    - ``resid_mid.{i}``: ``resid_pre + attn_out`` (input of ``post_attention_layernorm``);
    - ``resid_post.{i}`` and ``resid.{i}`` (our adapter's text site): output of
      ``model.layers.{i}`` = HF ``hidden_states[i + 1]``, except for the last layer, whose
      HF ``hidden_states[-1]`` is after the final norm (that one is ``ln_final``);
    - ``attn_out.{i}``: output of ``self_attn`` (after ``o_proj``);
    - ``mlp_post.{i}``: ``act(gate_proj(x)) * up_proj(x)``, the input of ``down_proj`` (the
      editors' key vectors);
    - ``mlp_out.{i}``: output of ``model.layers.{i}.mlp`` (of ``down_proj``);
    - ``ln1.{i}`` / ``ln2.{i}``: outputs of ``input_layernorm`` / ``post_attention_layernorm``
      (HF's, with the norm weight applied);
    - ``pattern.{i}``: post-softmax attention, ``(batch, n_heads, query, key)``.

    Global: ``embed`` (``hidden_states[0]``), ``ln_final`` (output of ``model.norm``),
    ``logits``.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be positive, got {n_layers}")
    names = {"embed": "hook_embed", "ln_final": "ln_final.hook_out", "logits": "hook_unembed"}
    for i in range(n_layers):
        b = f"blocks.{i}"
        names.update({
            f"resid_pre.{i}": f"{b}.hook_resid_pre",
            f"resid_mid.{i}": f"{b}.hook_resid_mid",
            f"resid_post.{i}": f"{b}.hook_resid_post",
            f"resid.{i}": f"{b}.hook_resid_post",
            f"attn_out.{i}": f"{b}.hook_attn_out",
            f"mlp_post.{i}": f"{b}.mlp.hook_post",
            f"mlp_out.{i}": f"{b}.hook_mlp_out",
            f"ln1.{i}": f"{b}.ln1.hook_out",
            f"ln2.{i}": f"{b}.ln2.hook_out",
            f"pattern.{i}": f"{b}.attn.hook_pattern",
        })
    return names

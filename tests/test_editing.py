"""Editors on the shipped SynthWorld LM (4 layers x 128; the quick world's 2 x 64 LM barely holds
its facts and cannot be edited meaningfully): efficacy, bit-exact restore, deltas, guards, the
statistics cache, hyperparameter files, and the update formulas against hand computations."""

import json

import numpy as np
import pytest
import torch

from unike_interp.editing import EditGuardError, EditRequest, WeightDelta, load_hparams, make_editor, make_hparams
from unike_interp.editing.batching import make_batch
from unike_interp.editing.memit import ridge_update
from unike_interp.editing.stats import (StatsCache, layer_second_moment, nullspace_projector, second_moment,
                                        key_weights_hash)
from unike_interp.models import load_model

EDITORS = ("rome", "memit", "pmet", "alphaedit", "ft")


@pytest.fixture(scope="module")
def adapter():
    return load_model("toy-direct")


@pytest.fixture
def cache(tmp_path):
    return StatsCache(tmp_path / "stats")


def params(lm):
    return {k: v.detach().clone() for k, v in lm.state_dict().items()}


def assert_bit_exact(lm, before):
    after = lm.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k


def requests(adapter, n, start=0):
    """Stage-1 requests whose new target's first token is neither the LM's answer nor the old one's."""
    from unike_interp.data.synthworld import CATEGORY_VALUES

    recs = adapter.world.records[start:]
    arg = adapter.next_token_logits([r.stage_1.prompt for r in recs]).argmax(-1).tolist()
    out = []
    for r, a in zip(recs, arg):
        taken = {a, adapter.first_token_id(r.stage_1.gt)}
        new = [v for v in CATEGORY_VALUES[r.category] if adapter.first_token_id(v) not in taken]
        if new:
            out.append(EditRequest(r.case_id, r.subject, r.stage_1.prompt, new[0], r.stage_1.gt, r.category))
        if len(out) == n:
            return out
    raise AssertionError("not enough editable records in the quick world")


def top1_new(adapter, reqs):
    lg = adapter.next_token_logits([r.prompt for r in reqs]).argmax(-1)
    return (lg == torch.tensor([adapter.first_token_id(r.target_new) for r in reqs])).float().mean().item()


# --- subject positions ---------------------------------------------------------------------

@pytest.mark.parametrize("prompt,subject", [
    ("The color of the drumida is", "drumida"),
    ("The color of the {x}y is", "{x}y"),
    ("Beside a pebble, the Zoë-ka has", "zoë-ka"),
    ("drumida drumida is", "drumida"),
])
def test_subject_last_token_from_offsets(adapter, prompt, subject):
    b = make_batch(adapter.tokenizer, [prompt, "a much longer prompt so that the first row is padded " + prompt],
                   [subject, subject], ["red", None])
    tok = adapter.tokenizer
    for row in range(2):
        pos = int(b.subject_pos[row])
        ids = b.input_ids[row, : pos + 1].tolist()
        text = tok.decode([i for i, m in zip(ids, b.attention_mask[row, : pos + 1].tolist()) if m], skip_special_tokens=True)
        # the decoded text up to the subject's last token ends with the (last) subject occurrence
        assert text.lower().rstrip().endswith(subject.lower()), (text, subject)
    # the target's first token is predicted at the prompt's last position
    assert int(b.target_ids[0, b.last_prompt_pos[0]]) == tok(" red", add_special_tokens=False)["input_ids"][0]


def test_request_validation():
    with pytest.raises(ValueError, match="case 'c1'.*does not occur"):
        EditRequest("c1", "zib", "The color of the zob is", "red")
    with pytest.raises(ValueError, match="empty target_new"):
        EditRequest("c2", "zib", "The zib is", " ")


# --- hyperparameters ---------------------------------------------------------------------

def test_hparams_defaults_family_and_files(tmp_path):
    hp = make_hparams("memit", "synthworld")
    assert hp.layers is None and hp.module_template is None  # from the adapter
    assert make_hparams("memit", "llama").mom2_update_weight == 15000.0
    (tmp_path / "h.toml").write_text('editor = "rome"\nlayer = 0\nv_steps = 7\n')
    assert load_hparams(tmp_path / "h.toml").v_steps == 7
    (tmp_path / "h.yaml").write_text("layers: [1, 0]\nmom2_update_weight: 10\n")
    hp = load_hparams(tmp_path / "h.yaml", "memit")
    assert hp.layers == [0, 1] and hp.mom2_update_weight == 10
    (tmp_path / "bad.toml").write_text('editor = "memit"\nmom2_weight = 3\n')
    with pytest.raises(ValueError, match=r"bad\.toml.*unknown memit hyperparameter.*mom2_weight"):
        load_hparams(tmp_path / "bad.toml")
    (tmp_path / "neg.yaml").write_text("v_lr: -1\n")
    with pytest.raises(ValueError, match=r"neg\.yaml.*v_lr"):
        load_hparams(tmp_path / "neg.yaml", "rome")
    with pytest.raises(ValueError, match="is for editor 'rome'"):
        load_hparams(tmp_path / "h.toml", "memit")
    with pytest.raises(ValueError, match="module_template"):
        make_hparams("rome", None, {"module_template": "model.layers.mlp"})


# --- statistics ---------------------------------------------------------------------------

def test_second_moment_matches_hand_computation(adapter):
    texts = ["The color of the drumida is red.", "a flag"]
    C, n = second_moment(adapter, "model.layers.0.mlp.down_proj", texts, samples=10_000, progress=False)
    keys = []
    h = adapter.module("model.layers.0.mlp.down_proj").register_forward_hook(lambda m, a, o: keys.append(a[0][0]))
    try:
        for t in texts:  # one at a time: no padding
            adapter.lm(**adapter.tokenizer(t, return_tensors="pt"))
    finally:
        h.remove()
    K = torch.cat(keys).double()
    assert n == K.shape[0]
    torch.testing.assert_close(C, (K.T @ K / n).float(), rtol=1e-4, atol=1e-5)


def test_one_pass_statistics_equal_each_layers_hand_computation(adapter):
    from unike_interp.editing.stats import gram, second_moments, select_token_texts

    K = torch.randn(300, 40, generator=torch.Generator().manual_seed(0))
    for dt in (torch.float32, torch.float64):  # BLAS syrk's one triangle, mirrored
        G = gram(K.to(dt))
        assert G.dtype == torch.float64 and torch.equal(G, G.T)
        torch.testing.assert_close(G, K.double().T @ K.double(), rtol=1e-5, atol=1e-4)

    texts = adapter.default_stats_corpus()[:40]
    ids, n_sel = select_token_texts(adapter.tokenizer, texts, 300)
    assert n_sel >= 300 and n_sel - len(ids[-1]) < 300  # the shortest prefix of texts holding 300 tokens
    paths = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    Cs, n = second_moments(adapter, paths, texts, 300, token_budget=64, progress=False)  # many small batches
    assert n == n_sel
    keys = {p: [] for p in paths}
    hooks = [adapter.module(p).register_forward_hook(lambda m, a, o, p=p: keys[p].append(a[0][0])) for p in paths]
    try:
        for row in ids:  # one text at a time: no padding
            adapter.lm(input_ids=torch.tensor([row]))
    finally:
        for h in hooks:
            h.remove()
    for p in paths:
        K = torch.cat(keys[p]).double()
        assert K.shape[0] == n
        torch.testing.assert_close(Cs[p], (K.T @ K / n).float(), rtol=1e-4, atol=1e-5)


def test_statistics_pass_stops_after_the_deepest_hooked_layer(adapter):
    from unike_interp.editing.stats import length_batches, second_moments

    calls = {0: 0, 1: 0, 3: 0}
    hooks = [adapter.module(f"model.layers.{i}").register_forward_hook(
        lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1)) for i in calls]
    try:
        second_moments(adapter, ["model.layers.1.mlp.down_proj", "model.layers.0.mlp.down_proj"],
                       adapter.default_stats_corpus()[:20], 100, progress=False)
    finally:
        for h in hooks:
            h.remove()
    assert calls[0] == 1 and calls[1] == 0 and calls[3] == 0  # stopped inside layer 1, before its MLP output
    lengths = [5, 17, 3, 17, 9, 1, 12]
    batches = length_batches(lengths, token_budget=34)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(max(lengths[i] for i in b) * len(b) <= 34 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


def test_rome_inverse_is_cached_with_the_statistics(adapter, cache, monkeypatch):
    import unike_interp.editing.stats as stats

    K = torch.randn(10, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Cinv, how = stats.inverse(K.T @ K)  # singular (fewer tokens than dimensions): the pseudo-inverse
    assert how == "pinv" and torch.allclose(Cinv, torch.linalg.pinv(K.T @ K))
    A = K.T @ K + torch.eye(50, dtype=torch.float64)
    Cinv, how = stats.inverse(A)
    assert how == "cholesky" and torch.allclose(Cinv @ A, torch.eye(50, dtype=torch.float64))

    editor = make_editor("rome", {"stats_samples": 3000}, family=adapter.family, stats_cache=cache)
    editor.prepare(adapter)
    C, _ = editor.second_moment(adapter, editor.layers(adapter)[0])
    Cinv, how = stats.inverse(C)  # float64, through a Cholesky factor (C has full rank here)
    assert how == "cholesky" and float((Cinv @ C.double() - torch.eye(C.shape[0], dtype=torch.float64)).abs().max()) < 1e-6
    assert torch.equal(editor._Cinv, Cinv.float())
    monkeypatch.setattr(stats, "inverse", lambda *a: (_ for _ in ()).throw(AssertionError("inverted again")))
    fresh = make_editor("rome", {"stats_samples": 3000}, family=adapter.family, stats_cache=cache)
    fresh.prepare(adapter)  # read from the cache, not inverted again
    assert torch.equal(fresh._Cinv, editor._Cinv)


def test_statistics_cache_is_content_addressed(adapter, cache, monkeypatch):
    import unike_interp.editing.stats as stats

    texts = adapter.default_stats_corpus()[:50]
    C1, meta = layer_second_moment(adapter, 0, texts=texts, samples=500, cache=cache, progress=False)
    files = list(cache.root.glob("*.safetensors"))
    assert len(files) == 1 and meta["samples"] == 500
    monkeypatch.setattr(stats, "second_moments", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    C2, _ = layer_second_moment(adapter, 0, texts=texts, samples=500, cache=cache, progress=False)
    assert torch.equal(C1, C2)
    with pytest.raises(AssertionError, match="recomputed"):  # another sample count is another key
        layer_second_moment(adapter, 0, texts=texts, samples=501, cache=cache, progress=False)
    with pytest.raises(AssertionError, match="recomputed"):  # another corpus too
        layer_second_moment(adapter, 0, texts=texts[:-1], samples=500, cache=cache, progress=False)
    files[0].write_bytes(b"garbage")  # a damaged file is recomputed, not trusted
    with pytest.raises(AssertionError, match="recomputed"):
        layer_second_moment(adapter, 0, texts=texts, samples=500, cache=cache, progress=False)


def test_weights_hash_tracks_the_layers_keys_depend_on(adapter):
    h0, h1 = key_weights_hash(adapter, 0), key_weights_hash(adapter, 1)
    w = adapter.module("model.layers.1.mlp.down_proj").weight
    with torch.no_grad():
        w[0, 0] += 1.0
    try:
        assert key_weights_hash(adapter, 0) == h0  # layer 1 does not feed layer 0's keys
        assert key_weights_hash(adapter, 1) != h1
    finally:
        with torch.no_grad():
            w[0, 0] -= 1.0


def test_nullspace_projector_by_hand():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    evals = torch.tensor([5.0, 3.0, 2.0, 1e-6, 1e-7, 0.0], dtype=torch.float64)
    C = (Q * evals) @ Q.T
    P = nullspace_projector(C, 1e-3, relative=True)
    expected = Q[:, 3:] @ Q[:, 3:].T
    torch.testing.assert_close(P, expected)
    K0 = Q[:, :3] @ torch.randn(3, 10, generator=g, dtype=torch.float64)  # keys in the preserved span
    assert float((P @ K0).abs().max()) < 1e-10


def test_ridge_update_by_hand():
    rng = np.random.default_rng(0)
    R, K = rng.normal(size=(3, 4)), rng.normal(size=(3, 5))
    A = rng.normal(size=(5, 5))
    C = A @ A.T / 5
    expected = R.T @ K @ np.linalg.inv(2.0 * C + K.T @ K)
    got = ridge_update(torch.tensor(R), torch.tensor(K), torch.tensor(C), 2.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
    # lambda -> 0 with independent keys: the update maps every key onto its residual exactly
    exact = ridge_update(torch.tensor(R), torch.tensor(K), torch.tensor(C), 1e-9).double().numpy()
    np.testing.assert_allclose(exact @ K.T, R.T, atol=1e-4)


# --- every editor on the quick world ---------------------------------------------------------

@pytest.mark.parametrize("name", EDITORS)
def test_editor_edits_and_restores_bit_exact(adapter, cache, name):
    reqs = requests(adapter, 4)
    before = params(adapter.lm)
    pre = top1_new(adapter, reqs)
    editor = make_editor(name, {"stats_samples": 3000}, family=adapter.family, stats_cache=cache)
    res = editor.edit(adapter, reqs)
    post = top1_new(adapter, reqs)
    assert set(res.delta.modules) == set(editor.edited_modules(adapter))
    assert all(v > 0 for v in res.delta.norms().values())
    # PMET discards the attention share of its target: 0.78-0.91 on 100-case shipped-world samples
    assert pre == 0.0 and post >= (0.5 if name == "pmet" else 0.75), (name, pre, post)
    res.remove()
    assert_bit_exact(adapter.lm, before)


def test_rome_update_is_rank_one_and_hits_its_target(adapter, cache):
    from unike_interp.editing.targets import mean_at_subject

    editor = make_editor("rome", family=adapter.family, stats_cache=cache)
    req = requests(adapter, 1)
    res = editor.edit(adapter, req)
    try:
        d = res.delta.deltas[editor.edited_modules(adapter)[0]]
        s = torch.linalg.svdvals(d.double())
        assert float(s[1] / s[0]) < 1e-5
    finally:
        res.remove()


def test_delta_save_load_apply_remove(adapter, cache, tmp_path):
    before = params(adapter.lm)
    editor = make_editor("memit", {"stats_samples": 3000}, family=adapter.family, stats_cache=cache)
    res = editor.edit(adapter, requests(adapter, 3))
    edited = params(adapter.lm)
    res.remove()
    path = res.delta.save(tmp_path / "d")
    assert path.suffix == ".safetensors" and (tmp_path / "d.json").exists()
    manifest = json.loads((tmp_path / "d.json").read_text())
    assert manifest["editor"] == "memit" and manifest["model"] == "toy-direct" and len(manifest["cases"]) == 3
    loaded = WeightDelta.load(tmp_path / "d.json")
    with loaded.apply(adapter.lm, check_model="toy-direct"):
        for k, v in adapter.lm.state_dict().items():
            torch.testing.assert_close(v, edited[k], rtol=0, atol=1e-6)
    assert_bit_exact(adapter.lm, before)
    with pytest.raises(ValueError, match="made for model 'toy-direct'"):
        loaded.apply(adapter.lm, check_model="other")
    (tmp_path / "d.json").write_text(json.dumps({**manifest, "modules": {"x": [1]}}))
    with pytest.raises(ValueError, match="do not match the manifest"):
        WeightDelta.load(tmp_path / "d")


def test_guard_names_case_and_layer_and_restores(adapter, cache):
    before = params(adapter.lm)
    editor = make_editor("rome", {"max_rel_update": 1e-9}, family=adapter.family, stats_cache=cache)
    req = requests(adapter, 1)
    with pytest.raises(EditGuardError, match=rf"{req[0].case_id}.*layer 0") as err:
        editor.edit(adapter, req)
    assert err.value.cases == [req[0].case_id] and err.value.layer == 0
    assert_bit_exact(adapter.lm, before)


def test_nan_guard_restores(adapter, cache, monkeypatch):
    import unike_interp.editing.memit as memit

    before = params(adapter.lm)
    monkeypatch.setattr(memit, "ridge_update", lambda R, K, C, lam: torch.full((R.shape[1], K.shape[1]), float("nan")))
    editor = make_editor("memit", {"stats_samples": 3000}, family=adapter.family, stats_cache=cache)
    with pytest.raises(EditGuardError, match="non-finite"):
        editor.edit(adapter, requests(adapter, 2))
    assert_bit_exact(adapter.lm, before)


def test_bfloat16_edit_and_restore(cache):
    ad = load_model("toy-direct", dtype=torch.bfloat16)
    assert next(ad.lm.parameters()).dtype == torch.bfloat16
    before = params(ad.lm)
    reqs = requests(ad, 2)
    res = make_editor("rome", family=ad.family, stats_cache=cache).edit(ad, reqs)
    assert top1_new(ad, reqs) >= 0.5
    res.remove()
    assert_bit_exact(ad.lm, before)


def test_alphaedit_update_spares_preserved_keys(adapter, cache):
    editor = make_editor("alphaedit", {"stats_samples": 3000}, family=adapter.family, stats_cache=cache)
    res = editor.edit(adapter, requests(adapter, 2))
    try:
        for l in editor.layers(adapter):
            d = res.delta.deltas[editor.module_path(adapter, l)].double()
            P = editor._P[l].double()
            # Delta = X P: no component along the preserved (non-null) directions
            eye = torch.eye(P.shape[0], dtype=torch.float64)
            assert float((d @ (eye - P)).norm() / d.norm()) < 1e-3
    finally:
        res.remove()
        editor.reset()


def test_sequence_keeps_the_unedited_models_statistics(adapter, cache, monkeypatch):
    import unike_interp.editing.base as base

    calls = []
    real = base.layer_second_moments
    monkeypatch.setattr(base, "layer_second_moments", lambda *a, **k: calls.extend(a[1]) or real(*a, **k))
    editor = make_editor("memit", {"stats_samples": 3000}, family=adapter.family, stats_cache=cache)
    before = params(adapter.lm)
    first = editor.edit(adapter, requests(adapter, 2))
    second = editor.edit(adapter, requests(adapter, 2, start=10))  # on the edited model
    assert calls == editor.layers(adapter)  # statistics computed once, before the first batch
    second.remove()
    first.remove()
    assert_bit_exact(adapter.lm, before)
    editor.reset()
    editor.edit(adapter, requests(adapter, 1)).remove()
    assert calls == editor.layers(adapter) * 2


def test_per_request_stop_freezes_converged_targets(adapter):
    """Targets are optimised row by row (Adam is elementwise, the loss a sum over requests): with
    v_stop_per_request a request whose NLL falls below v_stop_loss is frozen there, and a request
    that never converges follows exactly the trajectory it follows without freezing."""
    from unike_interp.editing.contexts import context_prefixes
    from unike_interp.editing.targets import optimize_targets

    reqs = requests(adapter, 6)
    site = adapter.paths.layer.format(adapter.edit_layers[-1])
    prefixes = context_prefixes(adapter, 1, 4, 0)
    common = {"v_steps": 12, "v_stop_loss": 1.0, "target_batch": 32}
    joint = optimize_targets(adapter, reqs, [site], prefixes, make_hparams("memit", "synthworld", common))
    rows = []  # rows each step runs through the top layer: a converged request leaves the batch
    top = adapter.module(adapter.paths.layer.format(adapter.num_layers - 1))
    h = top.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    try:
        alone = optimize_targets(adapter, reqs, [site], prefixes,
                                 make_hparams("memit", "synthworld", {**common, "v_stop_per_request": True}))
    finally:
        h.remove()
    n_rows = len(reqs) * len(prefixes) + len(reqs)  # prompts x prefixes, and the essence prompts
    assert rows[0] == n_rows and rows == sorted(rows, reverse=True) and rows[-1] < n_rows
    frozen = alone.target_nll < 1.0
    assert frozen.any() and (~frozen).any(), "the test needs converged and unconverged requests"
    d_joint, d_alone = joint.delta[site], alone.delta[site]
    torch.testing.assert_close(d_alone[~frozen], d_joint[~frozen], rtol=1e-4, atol=1e-5)
    # a frozen target stopped at its first step below the threshold: smaller than where it drifted
    assert (d_alone[frozen].norm(dim=-1) <= d_joint[frozen].norm(dim=-1) + 1e-6).all()


@pytest.mark.parametrize("editor", ["memit", "rome", "pmet"])
def test_layers_below_the_sites_are_reused_not_recomputed(adapter, monkeypatch, editor):
    """The layers under the optimised sites see the same inputs at every step: their outputs are
    recorded once and replayed, and the targets are bit for bit those of running every layer."""
    import unike_interp.editing.targets as targets
    from unike_interp.editing.contexts import context_prefixes
    from unike_interp.editing.pmet import PMET

    reqs = requests(adapter, 4)
    last = adapter.edit_layers[-1]
    sites = {"memit": [adapter.paths.layer.format(last)], "rome": [f"model.layers.{last}.mlp.down_proj"],
             "pmet": PMET(make_hparams("pmet", "synthworld", {})).target_sites(adapter, last)[0]}[editor]
    fixed = targets.fixed_layers(adapter, sites)
    assert fixed == [f"model.layers.{i}" for i in range(last + 1 if editor == "memit" else last)]
    hp = make_hparams("memit", "synthworld", {"v_steps": 6, "v_stop_loss": 0.0, "target_batch": 32})
    prefixes = context_prefixes(adapter, 1, 4, 0)
    # a replayed layer's own hooks still run; its MLP does not: it runs in the unedited passes
    # only, as often with 6 steps as with 2
    counts = {}
    for n_steps in (2, 6):
        calls = []
        hooks = [adapter.module(p).mlp.register_forward_pre_hook(lambda m, a, p=p: calls.append(p)) for p in fixed]
        try:
            step_hp = make_hparams("memit", "synthworld", {"v_steps": n_steps, "v_stop_loss": 0.0, "target_batch": 32})
            fast = targets.optimize_targets(adapter, reqs, sites, prefixes, step_hp)
        finally:
            for h in hooks:
                h.remove()
        counts[n_steps] = len(calls)
    assert counts[2] == counts[6] and counts[6] % len(fixed) == 0, counts
    monkeypatch.setattr(targets, "fixed_layers", lambda *a: [])
    full = targets.optimize_targets(adapter, reqs, sites, prefixes, hp)
    for s in sites:
        assert torch.equal(fast.delta[s], full.delta[s]) and torch.equal(fast.base[s], full.base[s])
    assert torch.equal(fast.target_nll, full.target_nll)
    assert not any("forward" in adapter.module(p).__dict__ for p in fixed)  # the layers are put back


@pytest.mark.parametrize("editor", ["memit", "rome", "pmet"])
def test_steps_run_only_the_positions_from_the_first_subject_on(adapter, monkeypatch, editor):
    """Positions before every row's subject cannot change when a vector is added at the subject:
    each step runs the positions from the first subject on, attending to a cache of those before.
    The layers above the sites see only those positions, and the targets match running every
    position (same losses, rounding aside)."""
    import unike_interp.editing.targets as targets
    from unike_interp.editing.batching import make_batch
    from unike_interp.editing.contexts import context_prefixes
    from unike_interp.editing.pmet import PMET

    reqs = requests(adapter, 4)
    last = adapter.edit_layers[-1]
    sites = {"memit": [adapter.paths.layer.format(last)], "rome": [f"model.layers.{last}.mlp.down_proj"],
             "pmet": PMET(make_hparams("pmet", "synthworld", {})).target_sites(adapter, last)[0]}[editor]
    hp = make_hparams("memit", "synthworld", {"v_steps": 8, "v_stop_loss": 0.0, "target_batch": 32})
    prefixes = context_prefixes(adapter, 1, 4, 0)
    prompts, subjects, tgts, _ = targets._rows(reqs, prefixes)
    batch = make_batch(adapter.tokenizer, prompts + [f"{r.subject} is" for r in reqs],
                       subjects + [r.subject for r in reqs], tgts + [None] * len(reqs))
    start, width = targets.suffix_start(batch), batch.input_ids.shape[1]
    assert 0 < start < width
    top = adapter.module(adapter.paths.layer.format(adapter.num_layers - 1))
    lengths = []
    hook = top.register_forward_pre_hook(lambda m, a: lengths.append(a[0].shape[1]))
    try:
        fast = targets.optimize_targets(adapter, reqs, sites, prefixes, hp)
    finally:
        hook.remove()
    # the unedited pass, the cached prefix, its check, then every step on the suffix
    assert lengths[:3] == [width, start, width - start] and lengths[3:] == [width - start] * 8, lengths
    monkeypatch.setattr(targets, "suffix_start", lambda batch: 0)
    full = targets.optimize_targets(adapter, reqs, sites, prefixes, hp)
    for s in sites:
        assert torch.equal(fast.base[s], full.base[s])
        torch.testing.assert_close(fast.delta[s], full.delta[s], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.target_nll, full.target_nll, rtol=1e-4, atol=1e-5)


def test_a_model_whose_cache_disagrees_runs_every_position(adapter, monkeypatch):
    """The prefix cache is checked against the whole forward on the unedited model; where it
    disagrees (here: a cache whose copy is corrupted), every position runs, with the same targets."""
    import unike_interp.editing.targets as targets

    reqs = requests(adapter, 2)
    site = adapter.paths.layer.format(adapter.edit_layers[-1])
    hp = make_hparams("memit", "synthworld", {"v_steps": 3, "v_stop_loss": 0.0})
    real = targets.SuffixPlan.cache_for

    def corrupted(self, rows):
        cache = real(self, rows)
        for layer in getattr(cache, "layers", []):
            layer.keys.mul_(0.5)
        return cache

    monkeypatch.setattr(targets.SuffixPlan, "cache_for", corrupted)
    plans = []
    monkeypatch.setattr(targets, "suffix_plan", lambda *a, _real=targets.suffix_plan: plans.append(_real(*a)) or plans[-1])
    bad = targets.optimize_targets(adapter, reqs, [site], [""], hp)
    assert plans == [None]
    monkeypatch.setattr(targets, "suffix_start", lambda batch: 0)
    full = targets.optimize_targets(adapter, reqs, [site], [""], hp)
    assert torch.equal(bad.delta[site], full.delta[site])


def test_target_weight_decay_shrinks_the_shift(adapter):
    """The target loss carries ``wd * |d|^2 / |h|^2`` per request: a larger weight decay leaves every
    request's shift smaller after the same steps, and rows stay independent (one request's shift
    does not depend on which others share its batch)."""
    from unike_interp.editing.targets import optimize_targets

    reqs = requests(adapter, 6)
    site = adapter.paths.layer.format(adapter.edit_layers[-1])
    common = {"v_steps": 15, "v_stop_loss": 0.0, "kl_factor": 0.0, "target_batch": 32}
    rel = {}
    for wd in (0.0, 1.0):
        t = optimize_targets(adapter, reqs, [site], [""], make_hparams("memit", "synthworld", {**common, "v_weight_decay": wd}))
        assert t.steps == 15
        rel[wd] = t.delta[site].norm(dim=-1) / t.base[site].norm(dim=-1)
    assert (rel[1.0] < rel[0.0]).all(), (rel[0.0], rel[1.0])
    hp = make_hparams("memit", "synthworld", {**common, "v_weight_decay": 1.0})
    half = optimize_targets(adapter, reqs[:3], [site], [""], hp)
    torch.testing.assert_close(half.delta[site].norm(dim=-1) / half.base[site].norm(dim=-1), rel[1.0][:3],
                               rtol=1e-4, atol=1e-5)

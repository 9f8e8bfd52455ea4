"""Statistics of the interpretability layer: pure functions over arrays.

Every function takes numpy arrays (or anything ``np.asarray`` accepts; torch tensors are
detached and moved to the CPU first) and returns numpy arrays, computed in float64 so that
statistics of bf16/fp16 activations are not dominated by rounding. Vector statistics act on the
**last axis** and broadcast over the leading ones, so one call handles a single edit ``(D,)``,
a batch ``(N, D)`` or per-token activations ``(N, T, D)``.

Undefined values are ``nan``, never an exception or a silent 0: the cosine of a zero vector, a
relative change of a zero vector, a projection onto a zero direction. Downstream tables
(:func:`auc_table`) drop ``nan`` rows and report how many were used.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = [
    "as_array", "drift", "cosine", "alignment", "projection", "bottleneck_retention",
    "generator_sensitivity", "reasoning_decomposition", "masked_mean", "value_direction", "auc_table",
]


def as_array(x: Any) -> np.ndarray:
    """``x`` as a float64 numpy array; torch tensors via ``x.detach().cpu()``.

    Duck-typed on ``detach`` so this module never imports torch.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":  # numpy has no bf16
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def _norm(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x, axis=-1)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with ``nan`` where ``den == 0`` (no warnings)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.full(num.shape, np.nan)
    ok = den != 0
    np.divide(num, den, out=out, where=ok)
    return out if out.ndim else out[()]


def _check_last_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[-1:] != b.shape[-1:]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same last dimension; got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


# ----------------------------------------------------------------------------- basic geometry


def cosine(a: Any, b: Any) -> np.ndarray:
    """Cosine similarity over the last axis.

    ``a``, ``b``: ``(..., D)`` (broadcastable leading axes). Returns ``(...)``::

        cos(a, b) = <a, b> / (|a| |b|)

    ``nan`` where either vector is zero; clipped to ``[-1, 1]`` against rounding.
    """
    a, b = as_array(a), as_array(b)
    _check_last_dim(a, b, "a", "b")
    out = _safe_div(np.sum(a * b, axis=-1), _norm(a) * _norm(b))
    return np.clip(out, -1.0, 1.0)


def drift(pre: Any, post: Any) -> dict[str, np.ndarray]:
    """How far an edit moves a representation.

    ``pre``, ``post``: ``(..., D)``, the same representation before and after the edit.
    Returns arrays of shape ``(...)``:

    - ``l2`` = ``|post - pre|``
    - ``relative`` = ``|post - pre| / |pre|`` (``nan`` where ``|pre| == 0``)
    - ``cosine_distance`` = ``1 - cos(pre, post)`` (``nan`` where either vector is zero)
    """
    pre, post = as_array(pre), as_array(post)
    _check_last_dim(pre, post, "pre", "post")
    l2 = _norm(post - pre)
    return {
        "l2": l2,
        "relative": _safe_div(l2, _norm(pre)),
        "cosine_distance": 1.0 - cosine(pre, post),
    }


def alignment(delta_text: Any, delta_cond: Any, connector_weight: Any = None) -> np.ndarray:
    """Cosine between an edit's change on the text pathway and on the conditioning pathway.

    ``delta_text``: ``(..., H)``, post-minus-pre hidden state of the language model (or, for a
    connector that reads several layers, those layers' deltas concatenated, ``(..., H')``).
    ``delta_cond``: ``(..., C)``, post-minus-pre conditioning handed to the generator.
    ``connector_weight``: optional ``W`` of shape ``(C, H')`` (a ``Linear`` weight). Returns ``(...)``::

        without W:  cos(delta_text, delta_cond)             (requires H == C)
        with W:     cos(W @ delta_text, delta_cond)

    ``W`` is applied without its bias because the inputs are differences: ``(W x' + b) - (W x + b)
    = W (x' - x)``. A value near 1 means the conditioning moved the way the connector (linearly)
    predicts from the text change; near 0 means the change was reshaped on the way.

    Raises ``ValueError`` naming the shapes when dimensions do not line up.
    """
    dt, dc = as_array(delta_text), as_array(delta_cond)
    if connector_weight is None:
        if dt.shape[-1:] != dc.shape[-1:]:
            raise ValueError(
                f"alignment without a connector needs equal last dimensions; delta_text has shape "
                f"{tuple(dt.shape)} and delta_cond has shape {tuple(dc.shape)} "
                f"(pass connector_weight to map the text delta into the conditioning space)"
            )
        return cosine(dt, dc)
    w = as_array(connector_weight)
    if w.ndim != 2:
        raise ValueError(f"connector_weight must be 2-D (C, H'); got shape {tuple(w.shape)}")
    if w.shape[1] != dt.shape[-1]:
        hint = ""
        if dt.shape[-1] and w.shape[1] % dt.shape[-1] == 0:
            hint = (f"; the connector reads {w.shape[1] // dt.shape[-1]} concatenated inputs of size "
                    f"{dt.shape[-1]}, so pass the concatenated delta")
        raise ValueError(
            f"connector_weight of shape {tuple(w.shape)} expects delta_text with last dimension "
            f"{w.shape[1]}; got delta_text of shape {tuple(dt.shape)}{hint}"
        )
    if w.shape[0] != dc.shape[-1]:
        raise ValueError(
            f"connector_weight of shape {tuple(w.shape)} maps into dimension {w.shape[0]}, but "
            f"delta_cond has shape {tuple(dc.shape)}"
        )
    return cosine(dt @ w.T, dc)


def projection(delta_cond: Any, d: Any) -> dict[str, np.ndarray]:
    """Decompose the conditioning change ``Δ`` along the "spelled-out" direction ``d``.

    ``delta_cond`` = ``Δ``: ``(..., C)``, the edit's change of the conditioning.
    ``d``: ``(..., C)`` (broadcastable), ``cond(new value spelled out) - cond(old value spelled
    out)``, i.e. the change that writing the new value into the prompt would make.
    Returns arrays of shape ``(...)``:

    - ``cos`` = ``<Δ, d> / (|Δ| |d|)`` (also ``nan`` where ``Δ == 0``)
    - ``length`` = ``<Δ, d> / |d|``, signed length of ``Δ`` along the unit vector ``d/|d|``
    - ``strength`` = ``<Δ, d> / |d|^2``: 1.0 means the edit moves the conditioning as far along
      ``d`` as spelling the new value out would, 0 not at all, negative the wrong way
    - ``orthogonal`` = ``|Δ - strength * d|``, the part of ``Δ`` unrelated to the value change

    All are ``nan`` where ``|d| == 0``.
    """
    delta, d = as_array(delta_cond), as_array(d)
    _check_last_dim(delta, d, "delta_cond", "d")
    dot = np.sum(delta * d, axis=-1)
    nd = _norm(d)
    strength = _safe_div(dot, nd**2)
    orth = _norm(delta - np.asarray(strength)[..., None] * d)  # nan strength -> nan orthogonal
    return {
        "cos": np.clip(_safe_div(dot, _norm(delta) * nd), -1.0, 1.0),
        "length": _safe_div(dot, nd),
        "strength": strength,
        "orthogonal": orth,
    }


def bottleneck_retention(delta_in: Any, weight: Any, k: int | None = None) -> dict[str, Any]:
    """How much of an input change a linear connector can pass on.

    ``weight`` = ``W``: ``(C_out, C_in)``, the connector's ``Linear`` weight (bias irrelevant for
    differences). ``delta_in`` = ``Δ``: ``(..., C_in)``. With the thin SVD ``W = U S V^T``
    (``S`` descending, ``r = min(C_out, C_in)`` values) returns:

    - ``energy_topk``: ``(...)``, ``|V_k^T Δ|^2 / |Δ|^2``, the share of the input change lying in
      the top-``k`` right-singular directions. ``k`` defaults to ``r``, the number of directions
      ``W`` has at all, so the default is the share that can survive the connector (for a
      rank-deficient ``W`` tiny singular values still count; pass ``k`` to restrict).
    - ``gain``: ``(...)``, ``|W Δ| / |Δ|``.
    - ``gain_relative``: ``(...)``, ``gain / S[0]`` in ``[0, 1]``; 1.0 means the change lies along
      the most amplified direction.
    - ``singular_values``: ``(r,)``, ``S``, returned once (it belongs to ``W``, not to rows).
    - ``k``: the ``k`` used.

    Per-row values are ``nan`` where ``Δ == 0``; ``gain_relative`` is ``nan`` if ``W == 0``.
    """
    delta, w = as_array(delta_in), as_array(weight)
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (C_out, C_in); got shape {tuple(w.shape)}")
    if delta.shape[-1:] != (w.shape[1],):
        raise ValueError(
            f"weight of shape {tuple(w.shape)} expects delta_in with last dimension {w.shape[1]}; "
            f"got delta_in of shape {tuple(delta.shape)}"
        )
    _, s, vt = np.linalg.svd(w, full_matrices=False)
    r = s.shape[0]
    if k is None:
        k = r
    if not 1 <= int(k) <= r:
        raise ValueError(f"k must be in [1, {r}] for a weight of shape {tuple(w.shape)}; got {k}")
    k = int(k)
    n2 = np.sum(delta**2, axis=-1)
    coords = delta @ vt[:k].T  # (..., k): coordinates of Δ in the top-k right-singular basis
    gain = _safe_div(_norm(delta @ w.T), np.sqrt(n2))
    return {
        "energy_topk": np.clip(_safe_div(np.sum(coords**2, axis=-1), n2), 0.0, 1.0),
        "gain": gain,
        "gain_relative": _safe_div(gain, s[0] if r else 0.0),
        "singular_values": s,
        "k": k,
    }


def generator_sensitivity(pre_blocks: Any, post_blocks: Any) -> np.ndarray:
    """Relative change of each generator block's output under the edit.

    ``pre_blocks``, ``post_blocks``: sequences of ``n_blocks`` arrays, each ``(B, T, D)`` (or one
    array ``(n_blocks, B, T, D)``); blocks may differ in ``T``/``D`` but pre and post must match
    block by block. Any trailing shape after ``B`` works (e.g. ``(B, C, H, W)`` feature maps).
    Returns ``(n_blocks, B)``::

        s[l, b] = |post_l[b] - pre_l[b]|_F / |pre_l[b]|_F      (Frobenius over all axes but B)

    ``nan`` where ``pre_l[b]`` is all zeros.
    """
    if len(pre_blocks) != len(post_blocks):
        raise ValueError(f"got {len(pre_blocks)} pre blocks but {len(post_blocks)} post blocks")
    rows = []
    for i, (pre, post) in enumerate(zip(pre_blocks, post_blocks)):
        pre, post = as_array(pre), as_array(post)
        if pre.shape != post.shape or pre.ndim < 1:
            raise ValueError(f"block {i}: pre shape {tuple(pre.shape)} != post shape {tuple(post.shape)}")
        if rows and pre.shape[0] != len(rows[0]):
            raise ValueError(f"block {i}: batch size {pre.shape[0]} differs from block 0 ({len(rows[0])})")
        b = pre.shape[0]
        rows.append(_safe_div(_norm((post - pre).reshape(b, -1)), _norm(pre.reshape(b, -1))))
    if not rows:
        return np.zeros((0, 0))
    return np.stack(rows)


def reasoning_decomposition(
    c_pre_direct: Any, c_post_direct: Any, c_pre_reason: Any, c_post_reason: Any, d: Any = None
) -> dict[str, np.ndarray]:
    """Split the conditioning of a reasoning prompt into the edit's part and the reasoning's part.

    All inputs ``(..., C)``, pooled conditioning (see :func:`masked_mean`): ``*_direct`` from the
    direct prompt, ``*_reason`` from the prompt that needs composition/reasoning, ``pre`` on the
    unedited model, ``post`` on the edited one. Three vectors::

        edit              = c_post_direct - c_pre_direct   # the edit's shift on the direct prompt
        reasoning         = c_post_reason - c_post_direct  # what reasoning adds on the edited model
        edit_on_reasoning = c_post_reason - c_pre_reason   # the edit's shift on the reasoning prompt

    Returns arrays of shape ``(...)``:

    - ``norm_edit``, ``norm_reasoning``, ``norm_edit_on_reasoning``
    - ``ratio_reasoning`` = ``|reasoning| / |edit|``, ``ratio_edit_on_reasoning`` =
      ``|edit_on_reasoning| / |edit|`` (``nan`` where ``edit == 0``)
    - ``cos_edit_reasoning``, ``cos_edit_edit_on_reasoning``, ``cos_reasoning_edit_on_reasoning``
    - with ``d`` (``(..., C)``, as in :func:`projection`): ``strength_edit``,
      ``strength_reasoning``, ``strength_edit_on_reasoning`` and ``strength_total`` for
      ``total = c_post_reason - c_pre_direct = edit + reasoning``, each ``<v, d> / |d|^2``.
    """
    a, b, c, e = (as_array(v) for v in (c_pre_direct, c_post_direct, c_pre_reason, c_post_reason))
    for name, v in (("c_post_direct", b), ("c_pre_reason", c), ("c_post_reason", e)):
        _check_last_dim(a, v, "c_pre_direct", name)
    edit, reasoning, eor = b - a, e - b, e - c
    n_edit, n_reason, n_eor = _norm(edit), _norm(reasoning), _norm(eor)
    out = {
        "norm_edit": n_edit,
        "norm_reasoning": n_reason,
        "norm_edit_on_reasoning": n_eor,
        "ratio_reasoning": _safe_div(n_reason, n_edit),
        "ratio_edit_on_reasoning": _safe_div(n_eor, n_edit),
        "cos_edit_reasoning": cosine(edit, reasoning),
        "cos_edit_edit_on_reasoning": cosine(edit, eor),
        "cos_reasoning_edit_on_reasoning": cosine(reasoning, eor),
    }
    if d is not None:
        for name, v in (("edit", edit), ("reasoning", reasoning), ("edit_on_reasoning", eor),
                        ("total", e - a)):
            out[f"strength_{name}"] = projection(v, d)["strength"]
    return out


def masked_mean(x: Any, mask: Any) -> np.ndarray:
    """Pool per-token conditioning into one vector per example.

    ``x``: ``(B, T, C)``; ``mask``: ``(B, T)`` of 0/1 (1 = real token). Returns ``(B, C)``::

        pooled[b] = sum_t m[b, t] x[b, t] / sum_t m[b, t]

    ``nan`` rows where an example has no unmasked token.
    """
    x, m = as_array(x), as_array(mask)
    if x.ndim != 3 or m.shape != x.shape[:2]:
        raise ValueError(f"need x (B, T, C) and mask (B, T); got x {tuple(x.shape)} and mask {tuple(m.shape)}")
    num = np.einsum("bt,btc->bc", m, x)
    return _safe_div(num, m.sum(axis=1)[:, None])


def value_direction(c_new: Any, c_old: Any, rtol: float = 1e-4) -> dict[str, Any]:
    """The value direction ``d`` ``(C,)`` from the conditioning of two reference prompts.

    ``c_new``, ``c_old``: ``(S_new, C)``, ``(S_old, C)``, the conditioning slots of the same template
    with the new / the old value spelled out (one word apart). When ``S_new == S_old`` slot ``s`` of
    one corresponds to slot ``s`` of the other; under a causal LM the slots before the value word are
    identical, and the value word and every later slot (which attend to it) differ. Then::

        differ = { s : |c_new[s] - c_old[s]| > rtol * max_t max(|c_new[t]|, |c_old[t]|) }
        d      = mean_{s in differ} (c_new[s] - c_old[s])                       ("aligned")

    so identical prefix slots do not dilute ``d`` (``rtol`` absorbs float rounding of batched
    forwards, not real differences, which are of the order of the slot norm). When the slot counts
    differ (the two values tokenise to different lengths) nothing corresponds, and::

        d = mean_s c_new[s] - mean_s c_old[s]                                   ("pooled")

    Returns ``{"d": (C,), "aligned": bool, "slots": int}``, ``slots`` = ``|differ|`` (aligned) or 0
    (pooled). ``d`` is zero when no slot differs (then projections on it are ``nan``).
    """
    a, b = as_array(c_new), as_array(c_old)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"need c_new (S, C) and c_old (S', C); got {tuple(a.shape)} and {tuple(b.shape)}")
    _check_last_dim(a, b, "c_new", "c_old")
    if a.shape != b.shape:
        return {"d": a.mean(axis=0) - b.mean(axis=0), "aligned": False, "slots": 0}
    diff = a - b
    scale = max(float(_norm(a).max(initial=0.0)), float(_norm(b).max(initial=0.0)))
    differ = _norm(diff) > rtol * scale
    d = diff[differ].mean(axis=0) if differ.any() else np.zeros(a.shape[1])
    return {"d": d, "aligned": True, "slots": int(differ.sum())}


# ----------------------------------------------------------------------------- predictive tables


def _refusal(n_success: int, n_fail: int, min_class: int) -> str | None:
    """Why an AUC over ``n_success`` / ``n_fail`` cases is not reported (None: it is)."""
    parts = [f"fewer than {min_class} {what} ({n})" for what, n in (("successes", n_success), ("failures", n_fail))
             if n < min_class]
    return " and ".join(parts) or None


def _mann_whitney(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``M`` ``(n_pos, n_neg)``: 1 where ``pos[i] > neg[j]``, 0.5 on a tie, 0 below (the Mann-Whitney kernel)."""
    return (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])


def _bootstrap_counts(n_success: int, n_fail: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """How often each case is drawn in each of ``n_boot`` class-stratified resamples.

    A fresh ``default_rng(seed)`` draws ``idx_s = integers(0, n_success, (n_boot, n_success))``, then
    ``idx_f = integers(0, n_fail, (n_boot, n_fail))`` (resample ``b`` = successes ``idx_s[b]`` and
    failures ``idx_f[b]``); returned as counts ``(n_boot, n_success)`` and ``(n_boot, n_fail)``. The
    same seed and class sizes give the same resamples for every statistic.
    """
    rng = np.random.default_rng(seed)
    out = []
    for n in (n_success, n_fail):
        idx = rng.integers(0, n, size=(n_boot, n))
        flat = (idx + n * np.arange(n_boot)[:, None]).ravel()  # row b's draws land in [b n, (b+1) n)
        out.append(np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64))
    return out[0], out[1]


def auc_table(statistics: Mapping[str, Any], success: Any, *, n_boot: int = 2000, seed: int = 0,
              min_class: int = 10, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """ROC AUC of each statistic as a predictor of edit success, with a bootstrap interval, or a refusal.

    ``statistics``: name -> ``(N,)`` values (one per edit); ``success``: ``(N,)`` bool. For each
    statistic, rows where it is not finite (``nan``/``inf``) are dropped; with ``x`` the values of the
    ``n_s`` successes and ``y`` those of the ``n_f`` failures::

        auc = U / (n_s n_f),   U = sum_ij [x_i > y_j] + 0.5 [x_i == y_j]   (Mann-Whitney U)

    the probability that a random success scores higher than a random failure (0.5 = uninformative),
    equal to ``sklearn.metrics.roc_auc_score``. The interval is the percentile interval of ``auc`` over
    ``n_boot`` resamples of the cases with replacement, stratified by class (each resample draws
    ``n_s`` successes and ``n_f`` failures, so both classes are always present; draws as in
    :func:`_bootstrap_counts`, seeded by ``seed``). Vectorised: with ``M = [x_i > y_j] + 0.5 [x_i ==
    y_j]`` ``(n_s, n_f)`` and the draw counts ``a`` ``(n_boot, n_s)``, ``b`` ``(n_boot, n_f)``, resample
    ``k`` has ``U_k = a_k^T M b_k``, exactly the U of the resampled values.

    A class with fewer than ``min_class`` cases is refused: with 5 successes each one moves the AUC by
    up to 0.2 and the interval spans most of ``[0, 1]``, so a bare number would mislead. Returns
    name -> dict with:

    - ``auc``: float, or ``None`` when refused; ``ci_low``, ``ci_high``: the ``level`` interval (``None``
      with ``auc``)
    - ``refused``: ``None``, or why, e.g. ``"fewer than 10 successes (5)"``
    - ``direction``: ``"higher->success"`` if ``auc >= 0.5`` else ``"lower->success"``
      (``None`` with ``auc``); ``max(auc, 1 - auc)`` is the separability either way
    - ``n``: rows used, ``n_success``, ``n_fail``: their classes, ``n_dropped``: non-finite rows
    """
    if min_class < 1:
        raise ValueError(f"min_class must be >= 1 (an AUC needs both classes); got {min_class}")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1; got n_boot={n_boot}, level={level}")
    y = np.asarray(success.detach().cpu() if hasattr(success, "detach") else success)
    if y.ndim != 1:
        raise ValueError(f"success must be 1-D (N,); got shape {tuple(y.shape)}")
    y = y.astype(bool)
    q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    counts: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # same class sizes -> same resamples
    table: dict[str, dict[str, Any]] = {}
    for name, values in statistics.items():
        v = as_array(values)
        if v.shape != y.shape:
            raise ValueError(f"statistic {name!r} has shape {tuple(v.shape)}, success has {tuple(y.shape)}")
        keep = np.isfinite(v)
        vv, yy = v[keep], y[keep]
        n_s, n_f = int(yy.sum()), int((~yy).sum())
        refused = _refusal(n_s, n_f, min_class)
        auc = lo = hi = None
        if refused is None:
            m = _mann_whitney(vv[yy], vv[~yy])
            auc = float(m.mean())
            if (n_s, n_f) not in counts:
                counts[n_s, n_f] = _bootstrap_counts(n_s, n_f, n_boot, seed)
            a, b = counts[n_s, n_f]
            boot = np.sum((a @ m) * b, axis=1) / (n_s * n_f)  # U_k / (n_s n_f), (n_boot,)
            lo, hi = (float(x) for x in np.percentile(boot, q))
        table[name] = {
            "auc": auc,
            "ci_low": lo,
            "ci_high": hi,
            "refused": refused,
            "direction": None if auc is None else ("higher->success" if auc >= 0.5 else "lower->success"),
            "n": int(len(vv)),
            "n_success": n_s,
            "n_fail": n_f,
            "n_dropped": int((~keep).sum()),
        }
    return table

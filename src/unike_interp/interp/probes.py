"""Linear value probes: is an attribute value linearly readable from the conditioning?

A probe for one category (e.g. ``color``) is a multinomial logistic regression, after
standardisation, from the pre-edit pooled conditioning ``X`` ``(N, C)`` to the subject's value
(``red``, ``blue``, ...). Accuracy is cross-validated with folds **grouped by subject**, so no
subject is in both a training and a test fold: otherwise the probe could memorise subjects rather
than read values. The probe is then refitted on all rows and applied to post-edit conditioning
(:func:`probe_shift`) to ask whether the edit made the conditioning *read* as the new value;
:func:`probe_run` does all of it for a recorded run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .statistics import pooled
from .stats import as_array, masked_mean

__all__ = ["ValueProbe", "group_folds", "fit_value_probes", "probe_shift", "probe_all_categories", "probe_run"]


@dataclass
class ValueProbe:
    """A fitted value probe for one category.

    - ``pipeline``: fitted ``StandardScaler -> LogisticRegression`` (on all rows)
    - ``classes``: ``(K,)`` value labels, the column order of :meth:`predict_proba`
    - ``cv_accuracy``: per-fold test accuracy; ``cv_mean``: their mean
    - ``chance``: share of the majority class over all rows (the accuracy of always guessing it)
    - ``splits``: the ``(train_idx, test_idx)`` pairs used (indices into the rows passed to
      :func:`fit_value_probes`), for auditing the grouping
    - ``n``, ``n_groups``, ``category`` (optional label)
    """

    pipeline: Any
    classes: np.ndarray
    cv_accuracy: list[float]
    cv_mean: float
    chance: float
    n: int
    n_groups: int
    splits: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)
    category: str | None = None

    def predict(self, X: Any) -> np.ndarray:
        """``X`` ``(M, C)`` -> ``(M,)`` predicted value labels."""
        return self.pipeline.predict(_features(X, self.pipeline.n_features_in_))

    def predict_proba(self, X: Any) -> np.ndarray:
        """``X`` ``(M, C)`` -> ``(M, K)`` probabilities, columns in ``self.classes`` order."""
        return self.pipeline.predict_proba(_features(X, self.pipeline.n_features_in_))


def _features(X: Any, n_features: int | None = None) -> np.ndarray:
    X = as_array(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (N, C); got shape {tuple(X.shape)}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"probe was fitted on {n_features} features; X has shape {tuple(X.shape)}")
    if not np.isfinite(X).all():
        raise ValueError("X contains nan/inf (e.g. a masked_mean row with no tokens); drop those rows")
    return X


def group_folds(groups: Sequence[Any], folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train_idx, test_idx)`` splits of ``GroupKFold(n_splits=min(folds, n_groups))``.

    Every group (subject) lies entirely in one test fold. With scikit-learn >= 1.6 groups are
    shuffled into folds with ``random_state=seed``; older versions use the deterministic
    size-balanced assignment (``seed`` then has no effect on the folds).
    """
    from sklearn.model_selection import GroupKFold

    g = np.asarray(groups).astype(str)
    n_groups = len(np.unique(g))
    n_splits = min(int(folds), n_groups)
    if n_splits < 2:
        raise ValueError(f"grouped cross-validation needs >= 2 folds and >= 2 groups; got folds={folds}, "
                         f"{n_groups} group(s)")
    try:
        splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    except TypeError:  # scikit-learn < 1.6 has no shuffle
        splitter = GroupKFold(n_splits=n_splits)
    dummy = np.zeros((len(g), 1))
    return [(tr, te) for tr, te in splitter.split(dummy, groups=g)]


def _make_pipeline(C: float, max_iter: int, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))


def fit_value_probes(
    X: Any, labels: Sequence[str], groups: Sequence[str], *, folds: int = 5, seed: int = 0,
    C: float = 1.0, max_iter: int = 2000,
) -> ValueProbe:
    """Fit and cross-validate a linear probe from conditioning to the value of one category.

    ``X``: ``(N, C)`` pre-edit pooled conditioning; ``labels``: ``(N,)`` value strings of ONE
    category; ``groups``: ``(N,)`` subject names. Model: ``StandardScaler`` then
    ``LogisticRegression(C=C, max_iter=max_iter)``. Cross-validation: :func:`group_folds` (no
    subject in both train and test); fold accuracy = share of test rows predicted correctly.
    ``chance = max_k count(label == k) / N``. The returned probe is refitted on all rows.

    Raises ``ValueError`` when the data cannot support a probe: fewer than 2 distinct values,
    fewer than 2 subjects, mismatched lengths, non-finite features, or a training fold that
    would hold a single value (too few subjects per value).
    """
    X = _features(X)
    y = np.asarray(labels).astype(str)
    g = np.asarray(groups).astype(str)
    if y.shape != (X.shape[0],) or g.shape != (X.shape[0],):
        raise ValueError(f"X has {X.shape[0]} rows but labels have shape {y.shape} and groups {g.shape}")
    classes, counts = np.unique(y, return_counts=True)
    n_groups = len(np.unique(g))
    if len(classes) < 2:
        raise ValueError(f"a value probe needs >= 2 distinct values; got {list(classes)}")
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs >= 2 subjects; got {n_groups}")

    splits = group_folds(g, folds=folds, seed=seed)
    accs = []
    for i, (tr, te) in enumerate(splits):
        if len(np.unique(y[tr])) < 2:
            raise ValueError(
                f"fold {i}: the training subjects all share one value ({str(y[tr][0])!r}); too few subjects "
                f"per value for grouped cross-validation ({n_groups} subjects, {len(classes)} values)"
            )
        pipe = _make_pipeline(C, max_iter, seed).fit(X[tr], y[tr])
        accs.append(float(np.mean(pipe.predict(X[te]) == y[te])))
    final = _make_pipeline(C, max_iter, seed).fit(X, y)
    return ValueProbe(
        pipeline=final,
        classes=np.asarray(final.classes_),
        cv_accuracy=accs,
        cv_mean=float(np.mean(accs)),
        chance=float(counts.max() / counts.sum()),
        n=int(X.shape[0]),
        n_groups=n_groups,
        splits=splits,
    )


def probe_shift(probe: ValueProbe, X_post: Any, new_values: Any, old_values: Any) -> dict[str, Any]:
    """What a pre-edit probe reads from post-edit conditioning.

    ``X_post``: ``(N, C)`` post-edit pooled conditioning; ``new_values``/``old_values``: ``(N,)``
    strings (or one string for all rows), the edit target and the original value. Returns:

    - ``reads_new`` / ``reads_old`` / ``reads_other``: share of rows whose argmax prediction is
      the new value / the old value / anything else (they sum to 1)
    - ``p_new`` / ``p_old``: mean probability the probe gives the new / old value (0 for a value
      the probe never saw in training: it cannot output it)
    - ``n``; ``n_new_unseen`` / ``n_old_unseen``: rows whose new / old value is not a probe class
    - ``predicted``: ``(N,)`` the predicted labels
    """
    X = _features(X_post)
    n = X.shape[0]
    new = np.broadcast_to(np.asarray(new_values).astype(str), (n,))
    old = np.broadcast_to(np.asarray(old_values).astype(str), (n,))
    classes = [str(c) for c in probe.classes]
    if n == 0:
        return {"reads_new": float("nan"), "reads_old": float("nan"), "reads_other": float("nan"),
                "p_new": float("nan"), "p_old": float("nan"), "n": 0, "n_new_unseen": 0,
                "n_old_unseen": 0, "predicted": np.asarray([], dtype=str)}
    pred = np.asarray(probe.predict(X)).astype(str)
    proba = probe.predict_proba(X)
    col = {c: i for i, c in enumerate(classes)}

    def _p(values: np.ndarray) -> np.ndarray:
        return np.array([proba[r, col[v]] if v in col else 0.0 for r, v in enumerate(values)])

    is_new, is_old = pred == new, pred == old
    return {
        "reads_new": float(is_new.mean()),
        "reads_old": float(is_old.mean()),
        "reads_other": float((~is_new & ~is_old).mean()),
        "p_new": float(_p(new).mean()),
        "p_old": float(_p(old).mean()),
        "n": int(n),
        "n_new_unseen": int(sum(v not in col for v in new)),
        "n_old_unseen": int(sum(v not in col for v in old)),
        "predicted": pred,
    }


def probe_all_categories(
    features: Any, categories: Sequence[str], values: Sequence[str], subjects: Sequence[str], **kwargs: Any
) -> dict[str, ValueProbe | str]:
    """Fit one value probe per category.

    ``features``: ``(N, C)``; ``categories``, ``values``, ``subjects``: ``(N,)``. Rows are grouped
    by category and :func:`fit_value_probes` (``kwargs`` passed on) is run on each group. Returns
    category -> :class:`ValueProbe`, or -> a string giving the reason when that category cannot be
    probed (the ``ValueError`` message), so one thin category does not abort the rest.
    """
    X = _features(features)
    cats = np.asarray(categories).astype(str)
    vals = np.asarray(values).astype(str)
    subs = np.asarray(subjects).astype(str)
    if not (cats.shape == vals.shape == subs.shape == (X.shape[0],)):
        raise ValueError(f"features has {X.shape[0]} rows but categories/values/subjects have shapes "
                         f"{cats.shape}, {vals.shape}, {subs.shape}")
    out: dict[str, ValueProbe | str] = {}
    for cat in np.unique(cats):
        rows = cats == cat
        try:
            probe = fit_value_probes(X[rows], vals[rows], subs[rows], **kwargs)
        except ValueError as e:
            out[str(cat)] = f"skipped: {e}"
            continue
        probe.category = str(cat)
        out[str(cat)] = probe
    return out


def probe_run(adapter, store, cases: Mapping[str, Mapping[str, Any]], *, seed: int,
              batch_size: int = 128) -> tuple[dict[str, Any], dict[str, float]]:
    """Value probes of a recorded run: trained on every subject, read on the edited cases.

    Training rows: for every subject and category of ``adapter.subject_values()``
    (``{subject: {category: value}}``; categories in the order of the first subject's), the pooled
    conditioning ``c`` ``(C,)`` of ``adapter.subject_prompt(subject)`` on the unedited model,
    recorded now in batches of ``batch_size``. One probe per category
    (:func:`probe_all_categories`, folds grouped by subject, ``seed``). Each case of ``store``
    (``cases``: case id -> its attributes ``category``, ``old``, ``new``) is read by its category's
    probe from ``c`` of its direct prompt before and after the edit (:func:`probe_shift`).

    Returns ``(summary, reads_new)``: category -> ``{cv_accuracy, chance}`` plus ``pre`` / ``post``
    shifts where the category has cases (``{"skipped": reason}`` where it cannot be probed), and
    case id -> 1.0 if the probe reads the new value after the edit, else 0.0. Without a value
    table: ``({"skipped": reason}, {})``.
    """
    table = adapter.subject_values()
    if table is None:
        return {"skipped": f"{adapter.name}: no table of every subject's values to train value probes on "
                           "(adapter.subject_values() is None)"}, {}
    from .recorder import Recorder

    subjects = list(table)
    categories = list(table[subjects[0]])
    prompts = [adapter.subject_prompt(s) for s in subjects]
    rec = Recorder(adapter, [s for s in adapter.sites() if s.name == "cond.tensor"], seed=seed)
    feats = np.concatenate([masked_mean(r.values["cond.tensor"], r.cond_mask) for r in
                            [rec.record(prompts[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]])
    probes = probe_all_categories(np.repeat(feats, len(categories), axis=0), categories * len(subjects),
                                  [table[s][c] for s in subjects for c in categories],
                                  [s for s in subjects for _ in categories], seed=seed)
    summary: dict[str, Any] = {}
    reads_new: dict[str, float] = {}
    for category, probe in probes.items():
        if isinstance(probe, str):
            summary[category] = {"skipped": probe}
            continue
        summary[category] = {"cv_accuracy": probe.cv_mean, "chance": probe.chance}
        ids = [cid for cid, attrs in cases.items() if attrs["category"] == category]
        if not ids:
            continue
        new = [cases[cid]["new"] for cid in ids]
        old = [cases[cid]["old"] for cid in ids]
        for state in ("pre", "post"):
            x = np.stack([pooled(store.read(cid, state, "direct")) for cid in ids])
            summary[category][state] = probe_shift(probe, x, new, old)
        reads_new.update({cid: float(y == n) for cid, y, n in zip(ids, summary[category]["post"]["predicted"], new)})
    return summary, reads_new

"""Value probes, validated against the generator: does an instrument read a subject's value from the
conditioning at least as reliably as the generator draws it?

**Data.** For every subject ``s`` of ``adapter.subject_values()`` (``{subject: {category: value}}``)
and every template ``t`` of ``adapter.subject_prompts(s)`` (the same number, in the same order, for
every subject), the unedited model's conditioning of that prompt: ``H`` ``(S, C)`` (the slots that
reach the generator), their LM positions ``(S,)`` and the subject's last LM token (``-1``: absent).

**Readers** (:class:`SlotReader`) turn one prompt's conditioning into a feature vector:

- ``subject``: ``H[j]`` ``(C,)`` at the slot whose LM position is the subject's last token, the
  slot the generator reads for the subject. Where some prompt of the training set has no such slot
  (SynthWorld ``toy-queries``: its slots are learned queries placed after the prompt) the whole set
  falls back to ``slots`` and the reader says so (``fallback``);
- ``slots``: the last ``k`` slots flattened, ``(k C,)``, ``k = min S`` over the training prompts:
  every slot where all prompts have the same count, else right-aligned on the prompt's end
  (``right_aligned``); a prompt with fewer than ``k`` slots cannot be read;
- ``mean``: ``(1/S) sum_j H[j]`` ``(C,)``, the probe used before (kept for comparison).

**Models**: ``linear`` = ``StandardScaler -> LogisticRegression(C=0.1)`` (:data:`LINEAR_C`);
``mlp`` = ``StandardScaler -> MLPClassifier`` with one hidden layer of 64 ReLU units, L2 ``alpha=1``,
adam for a fixed schedule (no early stopping: see :func:`fit_value_probes`), seeded.

**Template sets**: a probe is fitted per (category, reader, model, template set); the sets are each
single template that is a category's stage-1 image prompt (the prompt its cases are read from) and
all templates pooled (rows = subjects x templates). A single-template probe reads only prompts of
its template; a pooled one any prompt.

**Cross-validation**: folds grouped by subject (:func:`group_folds`), so no subject is in both a
training and a test fold, however many templates give it rows (otherwise a probe could memorise
subjects rather than read values). ``cv_mean`` is the mean fold accuracy; the out-of-fold
predictions give the accuracy on the held-out subjects of each split (image-seen / text-only).

**Validation** (:func:`validate_probes`): the generator's own accuracy per category and split
(:func:`generator_accuracy`: the judge reads the pre-edit image of each record's stage-1 image
prompt against ``stage_1.gt``). A probe is *validated* when ``cv_mean >= bar``,
``bar = min(a_gen, 0.9)``, ``a_gen`` the generator's accuracy on the subjects it was trained to draw
(``image-seen``; all records where they carry no split). The generator's accuracy on text-only
subjects, whose images it never saw, is the like-for-like comparison for a probe scored on
held-out subjects; it is reported beside it (``matches_text_only``), not used to validate.
(Measured on the shipped SynthWorld: the generator draws 0.90-1.00 of image-seen subjects right but
0.00-0.86 of text-only ones -- it learned its training subjects' looks by name -- and the probes read
0.33-0.98 on held-out subjects, so only a few categories validate.)

:func:`probe_run` reads a recorded run's cases with the best validated probe of their category:
what it reads from each case's direct prompt before and after the edit.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .stats import as_array

__all__ = ["READERS", "MODELS", "LINEAR_C", "LINEAR_TOL", "VALIDATION_CAP", "SlotReader", "ValueProbe", "group_folds",
           "fit_value_probes", "probe_shift", "probe_all_categories", "make_reader", "record_templates",
           "generator_accuracy", "ProbeValidation", "validate_probes", "probe_run"]

#: Slot readers, in the order they are fitted and reported.
READERS = ("subject", "slots", "mean")
#: Probe models.
MODELS = ("linear", "mlp")
#: The linear probe's inverse L2 strength in :func:`validate_probes`. Measured on toy-direct (color,
#: size, pattern; grouped 5-fold): C=0.1 reads as well as C=1 or better (one template, mean reader:
#: 0.35/0.74/0.58 vs 0.34/0.71/0.58) and converges 2x faster on the pooled 512-wide slots.
LINEAR_C = 0.1
#: ... and its solver tolerance there: 1e-3 gave the same accuracies as 1e-4 in 60% of the time.
LINEAR_TOL = 1e-3
#: A generator at or above this accuracy asks no more of a probe than this (``bar = min(a_gen, cap)``).
VALIDATION_CAP = 0.9


@dataclass(frozen=True)
class SlotReader:
    """How one prompt's conditioning becomes a probe's feature vector (built by :func:`make_reader`).

    - ``name``: the reader asked for (:data:`READERS`); ``mode``: what it does (``subject`` falls
      back to ``slots`` where the subject has no slot)
    - ``k``: ``slots``: how many of the last slots are flattened; ``right_aligned``: the training
      prompts had different slot counts, so the last ``k`` are read
    - ``fallback``: why ``subject`` reads all slots instead (None: it does not)
    """

    name: str
    mode: str
    k: int | None = None
    right_aligned: bool = False
    fallback: str | None = None

    def __call__(self, hidden: Any, lm_positions: Any, subject_last: int) -> np.ndarray | None:
        """``hidden`` ``(S, C)``, ``lm_positions`` ``(S,)`` -> the feature vector, or None when this
        prompt cannot be read (no slot at the subject's last token; fewer than ``k`` slots)."""
        H = as_array(hidden)
        if self.mode == "mean":
            return H.mean(axis=0)
        if self.mode == "subject":
            j = np.flatnonzero(np.asarray(lm_positions) == int(subject_last)) if subject_last >= 0 else []
            return H[j[-1]] if len(j) else None
        if H.shape[0] < self.k:
            return None
        return H[H.shape[0] - self.k:].reshape(-1)

    def describe(self) -> dict[str, Any]:
        return {"reader": self.name, "reads": self.mode, "k": self.k, "right_aligned": self.right_aligned,
                "fallback": self.fallback}


def make_reader(name: str, prompts: Sequence[tuple[Any, Any, int]]) -> SlotReader:
    """The reader ``name`` fitted to a training set: ``prompts`` = ``(hidden (S, C), lm_positions (S,),
    subject_last)`` per row. Decides ``k`` (``slots``: ``min S``) and the ``subject`` fallback."""
    if name not in READERS:
        raise ValueError(f"unknown reader {name!r}; known: {', '.join(READERS)}")
    if name == "mean":
        return SlotReader("mean", "mean")
    if name == "subject":
        missing = sum(1 for _h, p, s in prompts if s < 0 or not (np.asarray(p) == s).any())
        if not missing:
            return SlotReader("subject", "subject")
    lens = [np.shape(h)[0] for h, _p, _s in prompts]
    k = int(min(lens))
    why = None
    if name == "subject":
        why = (f"{missing} of {len(prompts)} prompts have no conditioning slot at the subject's last token "
               f"(e.g. learned queries); all slots flattened instead")
    return SlotReader(name, "slots", k=k, right_aligned=len(set(lens)) > 1, fallback=why)


@dataclass
class ValueProbe:
    """A fitted value probe for one category.

    - ``pipeline``: fitted ``StandardScaler -> LogisticRegression | MLPClassifier`` (on all rows;
      fitted on first use when :func:`fit_value_probes` was told ``refit=False``)
    - ``classes``: ``(K,)`` value labels, the column order of :meth:`predict_proba`
    - ``cv_accuracy``: per-fold test accuracy; ``cv_mean``: their mean
    - ``chance``: share of the majority class over all rows (the accuracy of always guessing it)
    - ``splits``: the ``(train_idx, test_idx)`` pairs used (indices into the rows passed to
      :func:`fit_value_probes`), for auditing the grouping; ``oof``: ``(N,)`` each row's prediction
      by the fold that held it out
    - ``n``, ``n_groups``, ``category``, ``model`` (:data:`MODELS`)
    - set by :func:`validate_probes`: ``reader`` (:class:`SlotReader`), ``templates`` (indices into
      the adapter's subject prompts), ``cv_by_split`` (split -> accuracy on its held-out subjects),
      ``validated``
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
    model: str = "linear"
    oof: np.ndarray | None = field(default=None, repr=False)
    reader: SlotReader | None = None
    templates: tuple[int, ...] | None = None
    cv_by_split: dict[str, float] = field(default_factory=dict)
    validated: bool | None = None
    refit: Callable[[], Any] | None = field(default=None, repr=False)

    def fitted(self) -> Any:
        """The pipeline fitted on all rows (fitting it now if that was deferred)."""
        if self.pipeline is None:
            self.pipeline = self.refit()
        return self.pipeline

    def predict(self, X: Any) -> np.ndarray:
        """``X`` ``(M, D)`` -> ``(M,)`` predicted value labels."""
        pipe = self.fitted()
        return pipe.predict(_features(X, pipe.n_features_in_))

    def predict_proba(self, X: Any) -> np.ndarray:
        """``X`` ``(M, D)`` -> ``(M, K)`` probabilities, columns in ``self.classes`` order."""
        pipe = self.fitted()
        return pipe.predict_proba(_features(X, pipe.n_features_in_))

    def describe(self, template_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready provenance and scores (no arrays)."""
        out: dict[str, Any] = {"model": self.model, "cv_accuracy": self.cv_mean, "cv_folds": list(self.cv_accuracy),
                               "cv_by_split": dict(self.cv_by_split), "chance": self.chance, "n": self.n,
                               "n_subjects": self.n_groups, "validated": self.validated}
        if self.reader is not None:
            out.update(self.reader.describe())
        if self.templates is not None:
            out["templates"] = list(self.templates)
            if template_names is not None:
                out["template_set"] = (template_names[self.templates[0]] if len(self.templates) == 1
                                       else f"all {len(self.templates)} templates pooled")
        return out


def _features(X: Any, n_features: int | None = None) -> np.ndarray:
    X = as_array(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (N, D); got shape {tuple(X.shape)}")
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


def _make_pipeline(model: str, C: float, max_iter: int, tol: float, seed: int, y: np.ndarray, hidden: int,
                   alpha: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model == "linear":
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, tol=tol,
                                                                      random_state=seed))
    if model == "mlp":
        # A fixed schedule of ~16,000 row presentations (20-60 epochs), no early stopping. Measured on
        # toy-direct (color/size/pattern, grouped 5-fold): sklearn's early stopping holds out rows of
        # the *training* subjects, stops after 12-21 epochs on one template and scored 0.15/0.44/0.36
        # against 0.24/0.57/0.48 for 60 fixed epochs at alpha=1 (alpha 0.1: 0.23/0.55/0.47).
        epochs = int(np.clip(round(16000 / max(len(y), 1)), 20, 60))
        return make_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=(hidden,), alpha=alpha, max_iter=epochs, random_state=seed))
    raise ValueError(f"unknown probe model {model!r}; known: {', '.join(MODELS)}")


def _fit(pipe, X, y):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    if isinstance(pipe[-1], MLPClassifier):  # the MLP trains in float32 (2x faster; the linear solver casts anyway)
        X = X.astype(np.float32)
    with warnings.catch_warnings():  # a capped schedule is a setting, not an accident
        warnings.simplefilter("ignore", ConvergenceWarning)
        return pipe.fit(X, y)


@dataclass
class _ProbeData:
    """The checked rows of one probe and its grouped folds (what each fold's fit needs)."""

    X: np.ndarray
    y: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    n_groups: int
    splits: list[tuple[np.ndarray, np.ndarray]]


def _probe_data(X: Any, labels: Sequence[str], groups: Sequence[str], folds: int, seed: int) -> _ProbeData:
    """Check the rows of a probe and split them into grouped folds; ``ValueError`` when they cannot
    support one (see :func:`fit_value_probes`)."""
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
    for i, (tr, _te) in enumerate(splits):
        if len(np.unique(y[tr])) < 2:
            raise ValueError(
                f"fold {i}: the training subjects all share one value ({str(y[tr][0])!r}); too few subjects "
                f"per value for grouped cross-validation ({n_groups} subjects, {len(classes)} values)"
            )
    return _ProbeData(X, y, classes, counts, n_groups, splits)


def _fold_predictions(X: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, fit_args: tuple) -> np.ndarray:
    """The test rows' predictions by a probe fitted on the training rows (one fold; a joblib task)."""
    model, C, max_iter, tol, seed, hidden, alpha = fit_args
    return _fit(_make_pipeline(model, C, max_iter, tol, seed, y[tr], hidden, alpha), X[tr], y[tr]).predict(X[te])


def _run_folds(tasks: list[tuple], n_jobs: int, bar=None) -> list[np.ndarray]:
    """``_fold_predictions(*task)`` for every task, in order; over ``n_jobs`` processes (joblib's
    loky backend, which gives each worker ``cores // n_jobs`` BLAS threads) when ``n_jobs > 1``.
    In this process BLAS runs on one thread: these matrices are small, and measured on 2 cores
    (benchmark/perf/probe_fits.py) the fits took 53 s on one BLAS thread against 145 s on two.
    ``bar``: a tqdm bar moved by each finished fold."""

    def results():
        if n_jobs <= 1 or len(tasks) <= 1:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                yield from (_fold_predictions(*t) for t in tasks)
            return
        from joblib import Parallel, delayed

        # in task order, each as soon as it and those before it are done
        yield from Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
            delayed(_fold_predictions)(*t) for t in tasks)

    out: list[np.ndarray] = []
    for pred in results():
        out.append(pred)
        if bar is not None:
            bar.update(1)
    return out


def _probe_from_folds(d: _ProbeData, predictions: list[np.ndarray], fit_args: tuple, refit: bool) -> ValueProbe:
    model, C, max_iter, tol, seed, hidden, alpha = fit_args
    oof = np.empty(len(d.y), dtype=object)
    accs = []
    for (_tr, te), pred in zip(d.splits, predictions):
        oof[te] = pred
        accs.append(float(np.mean(pred == d.y[te])))

    def final():
        return _fit(_make_pipeline(model, C, max_iter, tol, seed, d.y, hidden, alpha), d.X, d.y)

    return ValueProbe(
        pipeline=final() if refit else None,
        refit=final,
        classes=d.classes,
        cv_accuracy=accs,
        cv_mean=float(np.mean(accs)),
        chance=float(d.counts.max() / d.counts.sum()),
        n=int(d.X.shape[0]),
        n_groups=d.n_groups,
        splits=d.splits,
        model=model,
        oof=oof.astype(str),
    )


def default_jobs() -> int:
    """Processes for fitting probes: the CPU cores this process may use (``os.sched_getaffinity``)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def fit_value_probes(
    X: Any, labels: Sequence[str], groups: Sequence[str], *, folds: int = 5, seed: int = 0,
    C: float = 1.0, max_iter: int = 2000, tol: float = 1e-4, model: str = "linear", hidden: int = 64,
    alpha: float = 1.0, refit: bool = True, n_jobs: int = 1,
) -> ValueProbe:
    """Fit and cross-validate a probe from conditioning features to the value of one category.

    ``X``: ``(N, D)`` pre-edit features (one reader's); ``labels``: ``(N,)`` value strings of ONE
    category; ``groups``: ``(N,)`` subject names. ``model``: ``"linear"`` (``StandardScaler`` then
    ``LogisticRegression(C=C, max_iter=max_iter, tol=tol)``) or ``"mlp"`` (``StandardScaler`` then
    ``MLPClassifier((hidden,), alpha=alpha)``, adam for ``clip(16000 / N_train, 20, 60)`` epochs,
    ``random_state=seed``).
    Cross-validation: :func:`group_folds` (no subject in both train and test); fold accuracy =
    share of test rows predicted correctly. ``chance = max_k count(label == k) / N``. The returned
    probe is refitted on all rows, now or (``refit=False``) when it is first used. ``n_jobs``: the
    folds fitted in that many processes (each fold's fit is the same; only its BLAS thread count
    differs, which can move a float in its last bits).

    Raises ``ValueError`` when the data cannot support a probe: fewer than 2 distinct values,
    fewer than 2 subjects, mismatched lengths, non-finite features, or a training fold that
    would hold a single value (too few subjects per value).
    """
    if model not in MODELS:
        raise ValueError(f"unknown probe model {model!r}; known: {', '.join(MODELS)}")
    d = _probe_data(X, labels, groups, folds, seed)
    fit_args = (model, C, max_iter, tol, seed, hidden, alpha)
    preds = _run_folds([(d.X, d.y, tr, te, fit_args) for tr, te in d.splits], n_jobs)
    return _probe_from_folds(d, preds, fit_args, refit)


def probe_shift(probe: ValueProbe, X_post: Any, new_values: Any, old_values: Any) -> dict[str, Any]:
    """What a pre-edit probe reads from post-edit conditioning.

    ``X_post``: ``(N, D)`` post-edit features (the probe's reader); ``new_values``/``old_values``:
    ``(N,)`` strings (or one string for all rows), the edit target and the original value. Returns:

    - ``reads_new`` / ``reads_old`` / ``reads_other``: share of rows whose argmax prediction is
      the new value / the old value / anything else (they sum to 1)
    - ``p_new`` / ``p_old``: mean probability the probe gives the new / old value (0 for a value
      the probe never saw in training: it cannot output it)
    - ``n``; ``n_new_unseen`` / ``n_old_unseen``: rows whose new / old value is not a probe class
    - ``predicted``: ``(N,)`` the predicted labels; ``p_new_rows``: ``(N,)`` each row's ``p_new``
    """
    X = _features(X_post)
    n = X.shape[0]
    new = np.broadcast_to(np.asarray(new_values).astype(str), (n,))
    old = np.broadcast_to(np.asarray(old_values).astype(str), (n,))
    classes = [str(c) for c in probe.classes]
    if n == 0:
        return {"reads_new": float("nan"), "reads_old": float("nan"), "reads_other": float("nan"),
                "p_new": float("nan"), "p_old": float("nan"), "n": 0, "n_new_unseen": 0,
                "n_old_unseen": 0, "predicted": np.asarray([], dtype=str), "p_new_rows": np.zeros(0)}
    pred = np.asarray(probe.predict(X)).astype(str)
    proba = probe.predict_proba(X)
    col = {c: i for i, c in enumerate(classes)}

    def _p(values: np.ndarray) -> np.ndarray:
        return np.array([proba[r, col[v]] if v in col else 0.0 for r, v in enumerate(values)])

    is_new, is_old = pred == new, pred == old
    p_new = _p(new)
    return {
        "reads_new": float(is_new.mean()),
        "reads_old": float(is_old.mean()),
        "reads_other": float((~is_new & ~is_old).mean()),
        "p_new": float(p_new.mean()),
        "p_old": float(_p(old).mean()),
        "n": int(n),
        "n_new_unseen": int(sum(v not in col for v in new)),
        "n_old_unseen": int(sum(v not in col for v in old)),
        "predicted": pred,
        "p_new_rows": p_new,
    }


def probe_all_categories(
    features: Any, categories: Sequence[str], values: Sequence[str], subjects: Sequence[str], **kwargs: Any
) -> dict[str, ValueProbe | str]:
    """Fit one value probe per category.

    ``features``: ``(N, D)``; ``categories``, ``values``, ``subjects``: ``(N,)``. Rows are grouped
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


# ----------------------------------------------------------------------------- the world's conditioning


def record_templates(adapter, subjects: Sequence[str], *, seed: int = 0, batch_size: int = 128
                     ) -> list[list[tuple[np.ndarray, np.ndarray, int]]]:
    """The unedited conditioning of every subject prompt: ``out[t][i] = (H (S, C), lm_positions (S,),
    subject_last)`` of ``adapter.subject_prompts(subjects[i])[t]``, only the slots that reach the
    generator (mask 1), recorded with :class:`~unike_interp.interp.recorder.Recorder` (``seed``) in
    batches of ``batch_size`` prompts of one template."""
    from .recorder import Recorder

    prompts = [list(adapter.subject_prompts(s)) for s in subjects]
    counts = {len(p) for p in prompts}
    if len(counts) != 1:
        raise ValueError(f"{adapter.name}: subject_prompts gives different numbers of templates per subject "
                         f"({sorted(counts)}); the probes need one feature space per template")
    rec = Recorder(adapter, [s for s in adapter.sites() if s.name == "cond.tensor"], seed=seed)
    out = []
    for t in range(counts.pop()):
        rows: list[tuple[np.ndarray, np.ndarray, int]] = []
        for i in range(0, len(subjects), batch_size):
            r = rec.record([p[t] for p in prompts[i:i + batch_size]], list(subjects[i:i + batch_size]))
            for j in range(len(r.prompts)):
                keep = r.cond_mask[j].astype(bool)
                rows.append((r.values["cond.tensor"][j][keep], r.cond_lm_positions[j][keep],
                             int(r.token_positions[j, 0])))
        out.append(rows)
    return out


def _template_names(adapter, subject: str) -> list[str]:
    return [p.replace(subject, "{subject}") for p in adapter.subject_prompts(subject)]


def _split_of(records: Sequence | None) -> dict[str, str]:
    return {r.subject: str(r.extra["split"]) for r in records or [] if r.extra.get("split") is not None}


def generator_accuracy(adapter, judge, records: Sequence, *, seed: int = 0, batch_size: int = 64, bar=None
                       ) -> dict[str, dict[str, dict[str, Any]]]:
    """The generator's own accuracy: does it draw each record's true value?

    For every record, the unedited model draws ``stage_1.image_prompt``
    (``adapter.generate_images(..., seed=seed)``) and ``judge.judge_batch(images, records,
    "stage_1", targets=stage_1.gt)`` reads it. Per category and split (``record.extra["split"]``;
    ``"all"``: every record of the category): ``accuracy = correct / n``, with ``correct``,
    ``wrong`` (the judge read another value) and ``judge_errors`` (no verdict; a miss in the
    accuracy, as in the benchmark's tables, but never counted as a wrong drawing) beside ``n``.
    ``bar``: a tqdm bar moved by each batch of ``batch_size`` images drawn.
    """
    records = list(records)
    parts = []  # the batches generate_images would draw, one at a time for the bar
    for i in range(0, len(records), max(1, batch_size)):
        part = records[i:i + batch_size]
        parts.append(adapter.generate_images([r.stage_1.image_prompt for r in part], seed=seed, batch_size=batch_size))
        if bar is not None:
            bar.update(len(part))
    images = np.concatenate(parts) if parts else adapter.generate_images([], seed=seed)
    verdicts = judge.judge_batch(images, records, ["stage_1"] * len(records), [r.stage_1.gt for r in records])
    tallies: dict[str, dict[str, list[int]]] = {}
    for r, v in zip(records, verdicts):
        outcome = 2 if v.verdict is None else (0 if v.verdict else 1)  # correct, wrong, judge error
        for split in ("all", r.extra.get("split")):
            if split is not None:
                tallies.setdefault(r.category, {}).setdefault(str(split), [0, 0, 0])[outcome] += 1
    return {cat: {split: {"accuracy": c / (c + w + e), "n": c + w + e, "correct": c, "wrong": w,
                          "judge_errors": e} for split, (c, w, e) in splits.items()}
            for cat, splits in tallies.items()}


def _bar(gen: Mapping[str, Any] | None) -> float | None:
    """``min(a_gen, cap)``: ``a_gen`` on image-seen subjects, on all records without a split."""
    if not gen:
        return None
    ref = gen.get("image-seen") or gen.get("all")
    return None if ref is None else min(float(ref["accuracy"]), VALIDATION_CAP)


@dataclass
class ProbeValidation:
    """Every probe fitted for an adapter, the generator's accuracy, and which probes are validated.

    - ``templates``: the subject-prompt templates (``{subject}`` for the name); probe ``templates``
      index into them
    - ``probes``: category -> every fitted probe (readers x models x template sets)
    - ``skipped``: category -> reasons some probe could not be fitted
    - ``generator``: category -> split -> :func:`generator_accuracy` entry, or ``{"skipped": reason}``
    - ``bars``: category -> ``min(a_gen, 0.9)`` (None: no generator accuracy, nothing validated)
    - ``seconds``: wall time of ``record`` (conditioning), ``generator`` (images + judge), ``fit`` (all
      probes), and ``fit_cpu``, the process's CPU time while fitting
    """

    templates: list[str]
    probes: dict[str, list[ValueProbe]]
    skipped: dict[str, list[str]]
    generator: dict[str, Any]
    bars: dict[str, float | None]
    seconds: dict[str, float]
    chance: dict[str, float] = field(default_factory=dict)

    def best(self, category: str, *, validated_only: bool = True, model: str | None = None,
             templates: set[int] | None = None) -> ValueProbe | None:
        """The probe of ``category`` with the highest ``cv_mean`` (ties: the earlier fitted), among the
        validated ones (``validated_only``), of ``model``, and able to read prompts of every template
        in ``templates`` (a single-template probe reads only its own; a pooled one any)."""
        def fits(p: ValueProbe) -> bool:
            if validated_only and not p.validated:
                return False
            if model is not None and p.model != model:
                return False
            return templates is None or len(p.templates) > 1 or set(templates) <= set(p.templates)

        ok = [p for p in self.probes.get(category, []) if fits(p)]
        return max(ok, key=lambda p: p.cv_mean) if ok else None

    def summary(self) -> dict[str, dict[str, Any]]:
        """category -> ``{chance, generator {split: accuracy}, bar, validated, best, best_by_model
        {model: best of any reader}, candidates [...], note}`` (JSON-ready)."""
        out: dict[str, dict[str, Any]] = {}
        for cat in sorted(set(self.probes) | set(self.skipped)):
            gen = self.generator.get(cat) if "skipped" not in self.generator else None
            best_any = self.best(cat, validated_only=False)
            best_ok = self.best(cat)
            d: dict[str, Any] = {
                "chance": self.chance.get(cat),
                "generator": {s: g["accuracy"] for s, g in (gen or {}).items()},
                "bar": self.bars.get(cat),
                "validated": None if self.bars.get(cat) is None else best_ok is not None,
                "cv_accuracy": None if best_any is None else best_any.cv_mean,
                "best": None if best_any is None else best_any.describe(self.templates),
                "best_by_model": {m: b.describe(self.templates) for m in MODELS
                                  if (b := self.best(cat, validated_only=False, model=m)) is not None},
                "candidates": [p.describe(self.templates) for p in self.probes.get(cat, [])],
            }
            if self.skipped.get(cat):
                d["skipped"] = list(self.skipped[cat])
            if best_any is None:
                d["note"] = "no probe could be fitted"
            elif self.bars.get(cat) is None:
                d["note"] = "not validated: no generator accuracy to validate against"
            elif best_ok is None:
                d["note"] = (f"no probe validates: the best ({best_any.reader.name}, {best_any.model}) reads "
                             f"{best_any.cv_mean:.3f} on held-out subjects, below the bar {self.bars[cat]:.3f}")
            if gen and "text-only" in gen and best_any is not None:
                d["matches_text_only"] = best_any.cv_mean >= gen["text-only"]["accuracy"]
            out[cat] = d
        return out


def _template_sets(n_templates: int, focus: set[int] | None) -> list[tuple[int, ...]]:
    singles = sorted(focus) if focus else list(range(n_templates))
    return [(t,) for t in singles] + ([tuple(range(n_templates))] if n_templates > 1 else [])


def validate_probes(
    adapter, *, seed: int = 0, judge=None, records: Sequence | None = None, categories: Sequence[str] | None = None,
    readers: Sequence[str] = READERS, models: Sequence[str] = MODELS, focus: Mapping[str, set[int]] | None = None,
    folds: int = 5, batch_size: int = 128, conditioning: list | None = None, n_jobs: int | None = None,
    progress: bool = False,
) -> ProbeValidation:
    """Fit every probe of the adapter's world and validate it against the generator.

    Rows: every subject of ``adapter.subject_values()`` x every template of a template set. Per
    category (``categories``: default all) and template set -- each single template in ``focus``
    [category] (default: the templates that are the stage-1 image prompt of one of the category's
    ``records``; every template where none is) and all templates pooled -- one probe per reader
    (:func:`make_reader` on that set) and model, :func:`fit_value_probes` with folds grouped by
    subject. ``cv_by_split``: accuracy of the out-of-fold predictions on each split's subjects
    (``records``' ``extra["split"]``).

    ``judge`` given: :func:`generator_accuracy` over ``records`` (default ``adapter.records()``) and
    ``validated = cv_mean >= min(a_gen(image-seen), 0.9)``; without it ``validated`` is None.
    ``conditioning``: a :func:`record_templates` result to reuse (else recorded now). ``n_jobs``:
    processes the folds of all probes are fitted in (default :func:`default_jobs`; 1: in this one).
    ``progress``: a bar over the generator's images and one over the folds fitted.
    """
    from tqdm.auto import tqdm

    table = adapter.subject_values()
    if table is None:
        raise ValueError(f"{adapter.name}: no table of every subject's values (adapter.subject_values() is None)")
    subjects = list(table)
    cats = list(categories) if categories is not None else list(table[subjects[0]])
    records = list(records) if records is not None else list(adapter.records() or [])
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    conds = conditioning if conditioning is not None else record_templates(adapter, subjects, seed=seed,
                                                                           batch_size=batch_size)
    seconds["record"] = time.perf_counter() - t0
    names = _template_names(adapter, subjects[0])

    t0 = time.perf_counter()
    cat_records = [r for r in records if r.category in cats]
    if judge is None:
        generator: dict[str, Any] = {"skipped": "no judge given: the generator's accuracy was not measured, so no "
                                                "probe is validated"}
    elif not cat_records:
        generator = {"skipped": f"{adapter.name}: no records (adapter.records()) whose images the judge could read"}
    else:
        with tqdm(total=len(cat_records), desc="probes: the generator's accuracy", unit="image",
                  disable=not progress) as bar:
            generator = generator_accuracy(adapter, judge, cat_records, seed=seed, bar=bar)
    seconds["generator"] = time.perf_counter() - t0

    if focus is None:
        focus = {}
        for r in cat_records:
            if r.subject in table:
                try:
                    t = list(adapter.subject_prompts(r.subject)).index(r.stage_1.image_prompt)
                except ValueError:
                    continue
                focus.setdefault(r.category, set()).add(t)
    split = _split_of(records)
    groups = np.asarray(subjects)
    row_split = np.asarray([split.get(s, "") for s in subjects])

    t0, cpu0 = time.perf_counter(), time.process_time()
    features: dict[tuple[tuple[int, ...], str], tuple[SlotReader, np.ndarray]] = {}

    def reader_matrix(tset: tuple[int, ...], name: str) -> tuple[SlotReader, np.ndarray]:
        if (tset, name) not in features:
            rows = [row for t in tset for row in conds[t]]
            reader = make_reader(name, rows)
            same = [v for k, v in features.items() if k[0] == tset and (v[0].mode, v[0].k) == (reader.mode, reader.k)]
            features[(tset, name)] = (reader, same[0][1] if same else np.stack([reader(*row) for row in rows]))
        return features[(tset, name)]

    probes: dict[str, list[ValueProbe]] = {}
    skipped: dict[str, list[str]] = {}
    bars: dict[str, float | None] = {}
    chance: dict[str, float] = {}
    fit_args = ("linear", LINEAR_C, 2000, LINEAR_TOL, seed, 64, 1.0)
    # first every probe's rows and folds, then every fold of every probe in one parallel map, then the probes
    data: dict[tuple, _ProbeData] = {}  # a fallen-back ``subject`` reads what ``slots`` reads: one fit for both
    planned: list[tuple] = []  # (category, template set, reader, model, key, split column)
    for cat in cats:
        y1 = np.asarray([table[s][cat] for s in subjects]).astype(str)
        _, counts = np.unique(y1, return_counts=True)
        chance[cat] = float(counts.max() / counts.sum())
        bars[cat] = _bar(generator.get(cat)) if "skipped" not in generator else None
        for tset in _template_sets(len(conds), (focus or {}).get(cat)):
            y, g, sp = (np.tile(a, len(tset)) for a in (y1, groups, row_split))
            for name in readers:
                reader, X = reader_matrix(tset, name)
                for model in models:
                    key = (cat, tset, reader.mode, reader.k, model)
                    try:
                        if model not in MODELS:
                            raise ValueError(f"unknown probe model {model!r}; known: {', '.join(MODELS)}")
                        if key not in data:
                            data[key] = _probe_data(X, y, g, folds, seed)
                    except ValueError as e:
                        skipped.setdefault(cat, []).append(f"{name}/{model}/templates {list(tset)}: {e}")
                        continue
                    planned.append((cat, tset, reader, model, key, sp))
    keys = list(data)
    tasks = [(data[k].X, data[k].y, tr, te, (k[-1], *fit_args[1:])) for k in keys for tr, te in data[k].splits]
    with tqdm(total=len(tasks), desc="probes: fits", unit="fold", disable=not progress or not tasks) as bar:
        preds = iter(_run_folds(tasks, default_jobs() if n_jobs is None else n_jobs, bar=bar))
    fitted = {k: _probe_from_folds(data[k], [next(preds) for _ in data[k].splits], (k[-1], *fit_args[1:]), refit=False)
              for k in keys}
    for cat, tset, reader, model, key, sp in planned:
        p = replace(fitted[key])
        y = data[key].y
        p.category, p.reader, p.templates = cat, reader, tset
        p.cv_by_split = {s: float(np.mean(p.oof[sp == s] == y[sp == s])) for s in np.unique(sp) if s}
        p.validated = None if bars[cat] is None else bool(p.cv_mean >= bars[cat])
        probes.setdefault(cat, []).append(p)
    seconds["fit"] = time.perf_counter() - t0
    seconds["fit_cpu"] = time.process_time() - cpu0  # this process's CPU time: the wall time on a free core
    return ProbeValidation(names, probes, skipped, generator, bars, seconds, chance)


# ----------------------------------------------------------------------------- reading a recorded run


def _case_rows(store, ids: Sequence[str], state: str, reader: SlotReader) -> list[np.ndarray | None]:
    out = []
    for cid in ids:
        acts = store.read(cid, state, "direct")
        out.append(reader(acts["cond.tensor"], acts["_lm_positions"], int(acts.get("_subject_last", -1))))
    return out


def probe_run(adapter, store, cases: Mapping[str, Mapping[str, Any]], *, seed: int, judge=None,
              records: Sequence | None = None, batch_size: int = 128, require_validated: bool = True,
              progress: bool = False) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Value probes of a recorded run: fitted and validated on the whole world, read on the edited cases.

    :func:`validate_probes` (``seed``, ``judge``, ``records``) fits every probe of the cases'
    categories (all categories for a run without cases); the single-template sets include the
    template of each case's direct prompt. Per category with cases (``cases``:
    case id -> its attributes ``category``, ``subject``, ``old``, ``new``), the probe used is
    :meth:`ProbeValidation.best` among those able to read every case's direct prompt: validated
    ones only (``require_validated``; else the best by ``cv_mean``, marked unvalidated). It reads
    the stored direct-prompt conditioning before and after the edit (:func:`probe_shift`).

    Returns ``(summary, per_case)``. ``summary``: ``probes`` (category ->
    :meth:`ProbeValidation.summary` entry plus ``used`` (the probe read with, or None and
    ``used_reason``) and the ``pre`` / ``post`` shifts), ``generator_accuracy`` (category -> split ->
    accuracy entry, or ``{"skipped": reason}``) and ``probe_setup`` (templates, readers, models,
    rule, seconds). ``per_case``: case id -> ``probe_reads_new`` (1.0 if the probe reads the new
    value after the edit, else 0.0), ``probe_p_new`` (``p_post(new)``) and ``probe_p_new_delta``
    (``p_post(new) - p_pre(new)``). Without a value table: ``probes = {"skipped": reason}``.
    """
    if adapter.subject_values() is None:
        why = (f"{adapter.name}: no table of every subject's values to train value probes on "
               "(adapter.subject_values() is None)")
        return {"probes": {"skipped": why}, "generator_accuracy": {"skipped": "no value probes to validate"}}, {}
    focus: dict[str, set[int]] = {}
    case_template: dict[str, int | None] = {}
    for cid, attrs in cases.items():
        prompt, subject = store.prompt(cid, "pre", "direct"), str(attrs.get("subject", ""))
        templates = list(adapter.subject_prompts(subject)) if subject else []
        case_template[cid] = templates.index(prompt) if prompt in templates else None
        if case_template[cid] is not None:
            focus.setdefault(str(attrs["category"]), set()).add(case_template[cid])
    records = list(records) if records is not None else list(adapter.records() or [])
    for r in records:  # the records' own templates, as validate_probes would take them
        if r.subject in (adapter.subject_values() or {}):
            prompts = list(adapter.subject_prompts(r.subject))
            if r.stage_1.image_prompt in prompts:
                focus.setdefault(r.category, set()).add(prompts.index(r.stage_1.image_prompt))
    # the instruments this run needs: its cases' categories (every category when it has no cases)
    categories = sorted({str(a["category"]) for a in cases.values()}) or None
    val = validate_probes(adapter, seed=seed, judge=judge, records=records, categories=categories, focus=focus,
                          batch_size=batch_size, progress=progress)
    summary = val.summary()
    per_case: dict[str, dict[str, float]] = {}
    for category, entry in summary.items():
        ids = [cid for cid, attrs in cases.items() if attrs["category"] == category]
        if not ids:
            continue
        need = {case_template[c] for c in ids}
        probe = val.best(category, templates=None if None in need else need)
        if None in need:  # a prompt outside the templates: only pooled probes can read it
            probe = max((p for p in val.probes.get(category, []) if len(p.templates) > 1
                         and (p.validated or not require_validated)), key=lambda p: p.cv_mean, default=None)
        elif probe is None and not require_validated:
            probe = val.best(category, validated_only=False, templates=need)
        if probe is None:
            entry["used"] = None
            entry["used_reason"] = entry.get("note") or "no probe can read these cases' direct prompts"
            continue
        entry["used"] = probe.describe(val.templates)
        pre = _case_rows(store, ids, "pre", probe.reader)
        post = _case_rows(store, ids, "post", probe.reader)
        ok = [i for i in range(len(ids)) if pre[i] is not None and post[i] is not None]
        entry["n_unreadable"] = len(ids) - len(ok)
        if not ok:
            continue
        ids = [ids[i] for i in ok]
        new = [cases[cid]["new"] for cid in ids]
        old = [cases[cid]["old"] for cid in ids]
        shifts = {state: probe_shift(probe, np.stack([rows[i] for i in ok]), new, old)
                  for state, rows in (("pre", pre), ("post", post))}
        for j, cid in enumerate(ids):
            p_post, p_pre = shifts["post"]["p_new_rows"][j], shifts["pre"]["p_new_rows"][j]
            per_case[cid] = {"probe_reads_new": float(shifts["post"]["predicted"][j] == new[j]),
                             "probe_p_new": float(p_post), "probe_p_new_delta": float(p_post - p_pre)}
        for state, sh in shifts.items():
            entry[state] = {k: v for k, v in sh.items() if k != "p_new_rows"}
    setup = {"templates": val.templates, "readers": list(READERS), "models": list(MODELS),
             "rule": f"validated: cv_accuracy >= min(generator accuracy on image-seen subjects, {VALIDATION_CAP})",
             "require_validated": require_validated, "seconds": val.seconds}
    return {"probes": summary, "generator_accuracy": val.generator, "probe_setup": setup}, per_case

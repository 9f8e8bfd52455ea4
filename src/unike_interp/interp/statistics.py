"""The study's statistics and figures, declared once.

A :class:`Statistic` is one per-case quantity, or a family of them whose name has
``<placeholders>`` (``text_drift_rel.<site>.<pos>``): what it measures, the function computing it
from one case's recorded activations (:class:`CaseActivations`), what must have been recorded
for it (prompt kinds, sites, the adapter's linear connector) and the :class:`Figure` that shows
it. :func:`case_statistics` evaluates every entry of :data:`STATISTICS` whose needs a case meets;
:mod:`~unike_interp.interp.plots` draws every entry of :data:`FIGURES` under its title. A new
statistic is one compute function and one entry here (and, if it gets one, a figure).

Notation (``pre`` / ``post``: the unedited / edited model; every vector ``(C,)`` or ``(H,)``)::

    c   = mean of the conditioning tensor over the positions that reach the generator ("pooled")
    Δc  = c_post(direct) - c_pre(direct)                 the edit's shift of the conditioning
    d   = c_pre(ref_new) - c_pre(ref_old)                what spelling the new value out would do
    Δh  = h_post - h_pre of a text site at one token     (rows: the subject's / the prompt's last)

Pooling mixes slots that do not correspond (the reasoning prompt's slots are not the direct
prompt's), so the conditioning statistics also come position-aligned, per *reader* (the slots a
statistic reads; :meth:`CaseActivations.aligned`), in families ``<name>.<reader>``::

    subject   C = c[s*] (1, C), s* the slot whose LM position is the subject's last token
              (absent where the prompt lacks the subject or no slot reads it, e.g. learned queries)
    slots     C = c (S, C), every slot; only where pre and post have the same slots (same LM positions)
    d_a       = stats.value_direction: mean over the slots where c_pre(ref_new) and c_pre(ref_old)
              differ of their difference (pooled d when their slot counts differ; value_direction.*
              records which)
    ΔC        = C_post(direct) - C_pre(direct) (S, C);  D = d_a repeated over the S slots
    cond_drift.<r>     = |ΔC|_F / |C_pre|_F
    projection_cos.<r> = <ΔC, D> / (|ΔC|_F |D|)  = sum_s <ΔC_s, d_a> / (|ΔC|_F sqrt(S) |d_a|)
    edit_strength.<r>  = <ΔC, D> / |D|^2         = sum_s <ΔC_s, d_a> / (S |d_a|^2)

(the pooled formulas applied to the flattened ``(S C,)`` vectors). The plain ``cond_drift``, ``projection_cos`` and
``edit_strength`` keep the pooled ``c`` and ``d`` so older results stay comparable; note
``edit_strength.slots`` = ``<mean_s ΔC_s, d_a> / |d_a|^2``, the pooled shift on the aligned ``d``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from . import stats as S

if TYPE_CHECKING:
    from ..models.base import ConnectorWeights
    from .store import ActivationStore

__all__ = ["KINDS", "TEXT_ROWS", "Figure", "Statistic", "CaseActivations", "FIGURES", "STATISTICS", "pooled",
           "figure", "shown_in", "case_statistics"]

#: Prompt kinds a case is recorded with (see :mod:`~unike_interp.interp.analyze`).
KINDS = ("direct", "reasoning", "ref_old", "ref_new")
#: The two rows of a text site: the subject's last token, the prompt's last token.
TEXT_ROWS = ("subject", "prompt")
_PLACEHOLDER = re.compile(r"<([a-z]+)>")
_NAME = re.compile(r"[a-z][a-z0-9_]*(\.([a-z0-9_]+|<[a-z]+>))*")


@dataclass(frozen=True)
class Figure:
    """One figure of the study: ``name`` (its files are ``<name>.png``/``.pdf``), ``title`` (the
    first line of its heading) and ``reads``, the results file it draws from (``stats.json`` of
    the analysis or the benchmark's ``table.json``)."""

    name: str
    title: str
    reads: str = "stats.json"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"figure name must be lower_snake_case; got {self.name!r}")
        if not self.title.strip():
            raise ValueError(f"figure {self.name!r}: empty title")
        if self.reads not in ("stats.json", "table.json"):
            raise ValueError(f"figure {self.name!r}: reads must be 'stats.json' or 'table.json'; got {self.reads!r}")


@dataclass(frozen=True)
class Statistic:
    """One per-case statistic (or a family of them) and what it needs.

    - ``name``: dotted, lower case; ``<part>`` placeholders name a family, e.g.
      ``generator_sensitivity.<block>`` -> ``generator_sensitivity.block.0``, ...
    - ``description``: what it measures, as a formula (notation in the module docstring)
    - ``compute(case) -> value``: a float for a plain name; for a family ``{parts: float}`` with
      one string per placeholder (a tuple, or a bare string for one placeholder). ``None``: the
      statistic is not a function of one case's activations and is computed over the whole run
      (the value probes, :func:`~unike_interp.interp.probes.probe_run`)
    - ``kinds``: prompt kinds that must be recorded in both states; ``sites``: sites those
      recordings must hold (``{last}`` stands for the LM's last layer); ``connector``: needs
      ``adapter.connector_weights()``
    - ``figure``: the figure that shows it (every statistic also enters the AUC table)
    """

    name: str
    description: str
    compute: Callable[["CaseActivations"], object] | None
    kinds: tuple[str, ...] = ("direct",)
    sites: tuple[str, ...] = ()
    connector: bool = False
    figure: Figure | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"statistic name must be dotted lower case with <part> placeholders; got {self.name!r}")
        if len(set(self.placeholders)) != len(self.placeholders):
            raise ValueError(f"statistic {self.name!r}: repeated placeholder")
        if not self.description.strip():
            raise ValueError(f"statistic {self.name!r}: empty description")
        if self.compute is not None and not callable(self.compute):
            raise ValueError(f"statistic {self.name!r}: compute must be callable or None")
        if isinstance(self.kinds, str) or isinstance(self.sites, str):  # ("a") is a string, not a 1-tuple
            raise ValueError(f"statistic {self.name!r}: kinds and sites must be tuples of names")
        if unknown := set(self.kinds) - set(KINDS):
            raise ValueError(f"statistic {self.name!r}: unknown prompt kinds {sorted(unknown)} (known: {KINDS})")
        if self.figure is not None and not isinstance(self.figure, Figure):
            raise ValueError(f"statistic {self.name!r}: figure must be a Figure or None")

    @cached_property
    def _regex(self) -> re.Pattern:
        pieces = _PLACEHOLDER.split(self.name)  # literal, placeholder, literal, ...
        return re.compile("".join(re.escape(x) if i % 2 == 0 else f"(?P<{x}>.+)" for i, x in enumerate(pieces)))

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.name))

    def format(self, *parts: str) -> str:
        """The name with its placeholders filled in order: ``format("block.0")``."""
        if len(parts) != len(self.placeholders):
            raise ValueError(f"statistic {self.name!r} takes {len(self.placeholders)} part(s); got {parts}")
        it = iter(parts)
        return _PLACEHOLDER.sub(lambda _: next(it), self.name)

    def match(self, name: str) -> dict[str, str] | None:
        """``{placeholder: part}`` when ``name`` belongs to this entry (``{}`` for a plain name), else None.
        A placeholder is greedy, so ``text_drift_rel.resid.3.prompt`` gives ``site='resid.3'``."""
        m = self._regex.fullmatch(name)
        return None if m is None else m.groupdict()

    def applies(self, case: "CaseActivations") -> bool:
        """Whether ``case`` holds what this statistic needs."""
        if self.compute is None or (self.connector and case.connector is None):
            return False
        sites = [case.site(s) for s in self.sites]
        return all(k in acts and all(s in acts[k] for s in sites) for k in self.kinds for acts in (case.pre, case.post))

    def evaluate(self, case: "CaseActivations") -> dict[str, float]:
        """``{name: value}`` of one case (names filled in for a family)."""
        value = self.compute(case)
        if not self.placeholders:
            return {self.name: float(value)}
        return {self.format(*(p if isinstance(p, tuple) else (p,))): float(v) for p, v in value.items()}


def pooled(acts: Mapping[str, np.ndarray]) -> np.ndarray:
    """``c`` ``(C,)``: the recorded conditioning ``(S, C)`` averaged over its positions (the store
    keeps only the positions that reach the generator)."""
    return acts["cond.tensor"].mean(axis=0)


@dataclass
class CaseActivations:
    """One recorded case as the statistics read it.

    ``pre`` / ``post``: prompt kind -> site -> array, as :meth:`ActivationStore.read` returns them:
    text sites ``(2, H)`` (rows :data:`TEXT_ROWS`), conditioning sites ``(S, C)``, generator blocks
    their output. A kind that was not recorded (the reasoning of a failed composition) is absent.
    ``connector``: the adapter's linear connector or None; ``num_layers``: the LM's layers.
    Quantities several statistics share are computed once (cached properties).
    """

    pre: dict[str, dict[str, np.ndarray]]
    post: dict[str, dict[str, np.ndarray]]
    connector: "ConnectorWeights | None"
    num_layers: int

    @classmethod
    def read(cls, store: "ActivationStore", case_id: str, *, connector: "ConnectorWeights | None",
             num_layers: int) -> "CaseActivations":
        def kinds(state: str) -> dict[str, dict[str, np.ndarray]]:
            out = {}
            for k in KINDS:
                try:
                    out[k] = store.read(case_id, state, k)
                except KeyError:
                    pass
            return out

        return cls(kinds("pre"), kinds("post"), connector, num_layers)

    def site(self, name: str) -> str:
        """A site name with ``{last}`` replaced by the LM's last layer index."""
        return name.format(last=self.num_layers - 1)

    def c(self, state: str, kind: str) -> np.ndarray:
        """``c`` ``(C,)`` of one state and prompt kind."""
        return pooled(getattr(self, state)[kind])

    @cached_property
    def delta_c(self) -> np.ndarray:
        """``Δc`` ``(C,)``."""
        return self.c("post", "direct") - self.c("pre", "direct")

    @cached_property
    def direction(self) -> np.ndarray:
        """``d`` ``(C,)``."""
        return self.c("pre", "ref_new") - self.c("pre", "ref_old")

    @cached_property
    def projection(self) -> dict[str, np.ndarray]:
        """:func:`~unike_interp.interp.stats.projection` of ``Δc`` on ``d``."""
        return S.projection(self.delta_c, self.direction)

    @cached_property
    def value_direction(self) -> dict:
        """``{"d": d_a (C,), "aligned": bool, "slots": int}``, :func:`~unike_interp.interp.stats.value_direction`
        of ``c_pre(ref_new)``, ``c_pre(ref_old)`` (all slots)."""
        return S.value_direction(self.pre["ref_new"]["cond.tensor"], self.pre["ref_old"]["cond.tensor"])

    def subject_slot(self, state: str, kind: str = "direct") -> int | None:
        """Index of the conditioning slot whose LM position is the subject's last token, or None (the
        prompt lacks the subject, or no slot reads that position, or it was not recorded)."""
        acts = getattr(self, state)[kind]
        if "_lm_positions" not in acts or "_subject_last" not in acts or int(acts["_subject_last"]) < 0:
            return None
        hit = np.flatnonzero(np.asarray(acts["_lm_positions"]) == int(acts["_subject_last"]))
        return int(hit[0]) if hit.size else None

    @cached_property
    def aligned(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """reader -> ``(C_pre, C_post)``, each ``(S, C)``, of the direct prompt's conditioning, for the
        readers whose slots correspond in pre and post: ``subject`` (``S = 1``, the subject slot,
        where both states have it at the same LM position) and ``slots`` (every slot, where both
        states have the same LM positions). A reader that does not apply is absent."""
        a, b = self.pre["direct"], self.post["direct"]
        out = {}
        # looked up per state: the edit changes no token, but a recording need not keep its slot order
        i, j = self.subject_slot("pre"), self.subject_slot("post")
        if i is not None and j is not None and a["_lm_positions"][i] == b["_lm_positions"][j]:
            out["subject"] = (a["cond.tensor"][i:i + 1], b["cond.tensor"][j:j + 1])
        pa, pb = a.get("_lm_positions"), b.get("_lm_positions")
        if (pa is not None and pb is not None and a["cond.tensor"].shape == b["cond.tensor"].shape
                and np.array_equal(pa, pb)):
            out["slots"] = (a["cond.tensor"], b["cond.tensor"])
        return out

    @cached_property
    def aligned_projection(self) -> dict[str, dict[str, np.ndarray]]:
        """reader -> :func:`~unike_interp.interp.stats.projection` of the flattened ``ΔC`` ``(S C,)`` on
        ``D`` = ``d_a`` repeated over the ``S`` slots (see the module docstring)."""
        d = self.value_direction["d"]
        return {r: S.projection((post - pre).ravel(), np.tile(d, len(pre))) for r, (pre, post) in self.aligned.items()}

    @cached_property
    def text_drift(self) -> dict[str, dict[str, np.ndarray]]:
        """site (without ``text.``) -> :func:`~unike_interp.interp.stats.drift` of its two rows."""
        a, b = self.pre["direct"], self.post["direct"]
        return {n[len("text."):]: S.drift(a[n], b[n]) for n in a if n.startswith("text.")}

    @cached_property
    def retention(self) -> dict:
        """:func:`~unike_interp.interp.stats.bottleneck_retention` through the connector's ``W`` of
        ``Δx`` ``(C_in,)``, the change of the connector's input averaged over positions."""
        a, b = self.pre["direct"]["cond.connector_in"], self.post["direct"]["cond.connector_in"]
        return S.bottleneck_retention(b.mean(axis=0) - a.mean(axis=0), self.connector.weight)


# ----------------------------------------------------------------------------- compute functions


def _text_drift(measure: str) -> Callable[[CaseActivations], dict]:
    def compute(case: CaseActivations) -> dict[tuple[str, str], float]:
        return {(site, pos): dr[measure][j] for site, dr in case.text_drift.items() for j, pos in enumerate(TEXT_ROWS)}
    return compute


def _cond_drift(case: CaseActivations):
    return S.drift(case.c("pre", "direct"), case.c("post", "direct"))["relative"]


def _cond_drift_aligned(case: CaseActivations) -> dict[str, float]:
    return {r: S.drift(pre.ravel(), post.ravel())["relative"] for r, (pre, post) in case.aligned.items()}


def _aligned_projection(measure: str) -> Callable[[CaseActivations], dict]:
    def compute(case: CaseActivations) -> dict[str, float]:
        return {r: p[measure] for r, p in case.aligned_projection.items()}
    return compute


def _value_direction(case: CaseActivations) -> dict[str, float]:
    vd = case.value_direction
    return {"aligned": float(vd["aligned"]), **({"slots": vd["slots"]} if vd["aligned"] else {})}


def _alignment(case: CaseActivations):
    last = case.site("text.resid.{last}")
    dtext = case.post["direct"][last][1] - case.pre["direct"][last][1]  # the prompt's last token
    w = None if case.connector is None else case.connector.weight[:, case.connector.last_layer]
    return S.alignment(dtext, case.delta_c, w)


def _generator_sensitivity(case: CaseActivations) -> dict[str, float]:
    a, b = case.pre["direct"], case.post["direct"]
    blocks = sorted((n for n in a if n.startswith("gen.block.")), key=lambda n: int(n.rsplit(".", 1)[1]))
    sens = S.generator_sensitivity([a[n][None] for n in blocks], [b[n][None] for n in blocks])
    return {n[len("gen."):]: v for n, v in zip(blocks, sens[:, 0])}


def _reasoning(case: CaseActivations) -> dict[str, float]:
    return S.reasoning_decomposition(case.c("pre", "direct"), case.c("post", "direct"), case.c("pre", "reasoning"),
                                     case.c("post", "reasoning"), case.direction)


# ----------------------------------------------------------------------------- the registry

FIG_MODALITY_GAP = Figure("modality_gap", "Modality gap: text edit (Eff.) vs image (VQA), stage 1", reads="table.json")
FIG_DRIFT_BY_LAYER = Figure("drift_by_layer", "Text-side drift under the edit, per layer (mean ± s.e.m. over cases)")
FIG_EDIT_STRENGTH = Figure("edit_strength_by_success", "Edit strength in the conditioning, by image outcome")
FIG_ALIGNMENT = Figure("alignment_by_success", "Does the text change reach the conditioning along the attribute?")
FIG_BOTTLENECK = Figure("bottleneck_retention", "Connector bottleneck: how much of the text change survives")
FIG_GENERATOR = Figure("generator_sensitivity", "Generator sensitivity to the edit, per block (mean ± s.e.m.)")
FIG_REASONING = Figure("reasoning_decomposition",
                       "Reasoning decomposition of the conditioning shift (mean ± s.e.m.; dots = cases)")
FIG_PROBES = Figure("probe_accuracy",
                    "Does a probe read the value from the conditioning as well as the generator draws it, "
                    "and does the edit move it?")
FIG_AUC_TABLE = Figure("auc_table", "Which statistic predicts the image outcome? ROC AUC")

# the causal analyses (drawn by interp/plots_causal.py from stats.json's interventions / tracing / knowledge_source)
FIG_VERDICTS = Figure("intervention_verdicts", "Why did the image not change? Verdict of each failed case")
FIG_GAIN = Figure("intervention_gain", "Image outcome against the gain of the edit's conditioning change")
FIG_TRACING = Figure("causal_tracing", "Cross-modal causal tracing: which LM states carry the edit into the image")
FIG_KNOWLEDGE = Figure("knowledge_source", "Where the visual knowledge lives: the LM's subject state or the name")

#: Every figure, in the order they are rendered.
FIGURES: tuple[Figure, ...] = (FIG_MODALITY_GAP, FIG_DRIFT_BY_LAYER, FIG_EDIT_STRENGTH, FIG_ALIGNMENT, FIG_BOTTLENECK,
                               FIG_GENERATOR, FIG_REASONING, FIG_PROBES, FIG_AUC_TABLE, FIG_VERDICTS, FIG_GAIN,
                               FIG_TRACING, FIG_KNOWLEDGE)

_REFS = ("direct", "ref_old", "ref_new")
TEXT_DRIFT_REL = Statistic("text_drift_rel.<site>.<pos>", "|Δh| / |h_pre| of each text site, direct prompt",
                           _text_drift("relative"), figure=FIG_DRIFT_BY_LAYER)
TEXT_DRIFT_COS = Statistic("text_drift_cos.<site>.<pos>", "1 - cos(h_pre, h_post) of each text site, direct prompt",
                           _text_drift("cosine_distance"), figure=FIG_DRIFT_BY_LAYER)
COND_DRIFT = Statistic("cond_drift", "|Δc| / |c_pre|", _cond_drift, sites=("cond.tensor",))
PROJECTION_COS = Statistic("projection_cos", "cos(Δc, d)", lambda case: case.projection["cos"], kinds=_REFS,
                           sites=("cond.tensor",), figure=FIG_ALIGNMENT)
EDIT_STRENGTH = Statistic("edit_strength", "<Δc, d> / |d|^2 (1 = as far as spelling the new value out)",
                          lambda case: case.projection["strength"], kinds=_REFS, sites=("cond.tensor",),
                          figure=FIG_EDIT_STRENGTH)
_READER = "subject: the subject's slot; slots: every slot, pre and post at the same LM positions"
COND_DRIFT_ALIGNED = Statistic("cond_drift.<reader>", f"|ΔC|_F / |C_pre|_F, position-aligned ({_READER})",
                               _cond_drift_aligned, sites=("cond.tensor",))
PROJECTION_COS_ALIGNED = Statistic("projection_cos.<reader>", "sum_s <ΔC_s, d_a> / (|ΔC|_F sqrt(S) |d_a|), "
                                   f"position-aligned ({_READER}; d_a = value_direction)",
                                   _aligned_projection("cos"), kinds=_REFS, sites=("cond.tensor",))
EDIT_STRENGTH_ALIGNED = Statistic("edit_strength.<reader>", "sum_s <ΔC_s, d_a> / (S |d_a|^2), position-aligned "
                                  f"({_READER}; d_a = value_direction)", _aligned_projection("strength"),
                                  kinds=_REFS, sites=("cond.tensor",))
VALUE_DIRECTION = Statistic("value_direction.<quantity>", "which d_a the aligned statistics used: aligned = 1 if "
                            "mean over the slots where c_pre(ref_new), c_pre(ref_old) differ (slots = how many), "
                            "0 if pooled (their slot counts differ)", _value_direction, kinds=("ref_old", "ref_new"),
                            sites=("cond.tensor",))
ALIGNMENT = Statistic("alignment", "cos(W Δh_L, Δc), Δh_L at the prompt's last token; W = the connector's columns "
                      "that read h_L (identity without a connector)", _alignment,
                      sites=("text.resid.{last}", "cond.tensor"), figure=FIG_ALIGNMENT)
BOTTLENECK_ENERGY = Statistic("bottleneck_energy", "|V_k^T Δx|^2 / |Δx|^2, Δx = Δ(connector input) averaged over "
                              "positions, W = U S V^T", lambda case: case.retention["energy_topk"],
                              sites=("cond.connector_in",), connector=True, figure=FIG_BOTTLENECK)
BOTTLENECK_GAIN = Statistic("bottleneck_gain_relative", "|W Δx| / (|Δx| s_1)",
                            lambda case: case.retention["gain_relative"], sites=("cond.connector_in",),
                            connector=True, figure=FIG_BOTTLENECK)
GENERATOR_SENSITIVITY = Statistic("generator_sensitivity.<block>", "|Δy|_F / |y_pre|_F of each generator block",
                                  _generator_sensitivity, sites=("gen.block.0",), figure=FIG_GENERATOR)
REASONING = Statistic("reasoning.<quantity>", "norms, ratios, cosines and strengths along d of the edit, reasoning "
                      "and edit-on-reasoning shifts (stats.reasoning_decomposition); pooled c and d only, since the "
                      "reasoning and direct prompts do not share slots", _reasoning, kinds=KINDS,
                      sites=("cond.tensor",), figure=FIG_REASONING)
PROBE_READS_NEW = Statistic("probe_reads_new", "1 if the best validated value probe (trained on the world's "
                            "pre-edit conditioning) reads the new value from the direct prompt's post-edit "
                            "conditioning, else 0", None)
PROBE_P_NEW = Statistic("probe_p_new", "p_post(new): the probability the best validated value probe gives the new "
                        "value, read from the direct prompt's post-edit conditioning at the probe's slots", None)
PROBE_P_NEW_DELTA = Statistic("probe_p_new_delta", "p_post(new) - p_pre(new) of the best validated value probe, "
                              "direct prompt", None)

#: Every statistic, in the order :func:`case_statistics` evaluates them.
STATISTICS: tuple[Statistic, ...] = (TEXT_DRIFT_REL, TEXT_DRIFT_COS, COND_DRIFT, PROJECTION_COS, EDIT_STRENGTH,
                                     COND_DRIFT_ALIGNED, PROJECTION_COS_ALIGNED, EDIT_STRENGTH_ALIGNED,
                                     VALUE_DIRECTION, ALIGNMENT, BOTTLENECK_ENERGY, BOTTLENECK_GAIN,
                                     GENERATOR_SENSITIVITY, REASONING, PROBE_READS_NEW, PROBE_P_NEW,
                                     PROBE_P_NEW_DELTA)


def _check_registry() -> None:
    for what, names in (("figure", [f.name for f in FIGURES]), ("statistic", [s.name for s in STATISTICS])):
        if len(set(names)) != len(names):
            raise ValueError(f"{what} names are not unique: {names}")
    if stray := [s.name for s in STATISTICS if s.figure is not None and s.figure not in FIGURES]:
        raise ValueError(f"statistics shown in a figure missing from FIGURES: {stray}")


_check_registry()


def figure(name: str) -> Figure:
    """The entry of :data:`FIGURES` called ``name``."""
    for f in FIGURES:
        if f.name == name:
            return f
    raise KeyError(f"no figure {name!r}; known: {', '.join(f.name for f in FIGURES)}")


def shown_in(fig: Figure) -> tuple[Statistic, ...]:
    """The statistics ``fig`` shows."""
    return tuple(s for s in STATISTICS if s.figure == fig)


def case_statistics(adapter, store: "ActivationStore", case_id: str) -> dict[str, float]:
    """Every statistic of :data:`STATISTICS` that one recorded case supports, ``{name: value}``."""
    case = CaseActivations.read(store, case_id, connector=adapter.connector_weights(), num_layers=adapter.num_layers)
    out: dict[str, float] = {}
    for stat in STATISTICS:
        if stat.applies(case):
            out.update(stat.evaluate(case))
    return out

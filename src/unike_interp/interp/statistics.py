"""The study's statistics and figures, declared once.

A :class:`Statistic` is one per-case quantity, or a family of them whose name has
``<placeholders>`` (``text_drift_rel.<site>.<pos>``): what it measures, the function computing it
from one case's recorded activations (:class:`CaseActivations`), what must have been recorded
for it (prompt kinds, sites, the adapter's linear connector) and the :class:`Figure` that shows
it. :func:`case_statistics` evaluates every entry of :data:`STATISTICS` whose needs a case meets;
:mod:`~unike_interp.interp.plots` draws every entry of :data:`FIGURES` under its title. A new
statistic is one compute function and one entry here (and, if it gets one, a figure).

Notation (``pre`` / ``post``: the unedited / edited model; every vector ``(C,)`` or ``(H,)``)::

    c   = mean of the conditioning tensor over the positions that reach the generator
    Δc  = c_post(direct) - c_pre(direct)                 the edit's shift of the conditioning
    d   = c_pre(ref_new) - c_pre(ref_old)                what spelling the new value out would do
    Δh  = h_post - h_pre of a text site at one token     (rows: the subject's / the prompt's last)
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
                    "Is the value linearly readable from the conditioning, and does the edit move it?")
FIG_AUC_TABLE = Figure("auc_table", "Which statistic predicts the image outcome? ROC AUC")

#: Every figure, in the order they are rendered.
FIGURES: tuple[Figure, ...] = (FIG_MODALITY_GAP, FIG_DRIFT_BY_LAYER, FIG_EDIT_STRENGTH, FIG_ALIGNMENT, FIG_BOTTLENECK,
                               FIG_GENERATOR, FIG_REASONING, FIG_PROBES, FIG_AUC_TABLE)

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
                      "and edit-on-reasoning shifts (stats.reasoning_decomposition)", _reasoning, kinds=KINDS,
                      sites=("cond.tensor",), figure=FIG_REASONING)
PROBE_READS_NEW = Statistic("probe_reads_new", "1 if the value probe trained on pre-edit conditioning reads the "
                            "new value from c_post, else 0", None)

#: Every statistic, in the order :func:`case_statistics` evaluates them.
STATISTICS: tuple[Statistic, ...] = (TEXT_DRIFT_REL, TEXT_DRIFT_COS, COND_DRIFT, PROJECTION_COS, EDIT_STRENGTH,
                                     ALIGNMENT, BOTTLENECK_ENERGY, BOTTLENECK_GAIN, GENERATOR_SENSITIVITY, REASONING,
                                     PROBE_READS_NEW)


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

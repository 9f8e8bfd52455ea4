"""Progress that moves: one bar per run counting *cases*, with an ETA, and quiet third-party bars.

A case's work is cut into phases whose shares add up to one case (:data:`SHARES`): measuring it
on the unedited model (``pre``), editing (``edit``) and measuring it on the edited model
(``post``). The protocol driver opens a phase for the cases of a batch; code inside it (image
chunks, the editor's target chunks) moves the bar by a fraction of that phase through
:func:`step`, which finds the open bar in a context variable, so no signature has to carry it.
A batch of 100 cases therefore moves the bar every few seconds instead of once at its end.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
from typing import Iterator

log = logging.getLogger(__name__)

#: A case's work per phase (measured on toy-direct x MEMIT, 100 cases in one batch: about
#: 0.25 / 0.35 / 0.40 of the time; only the ETA's early accuracy depends on them).
SHARES = {"pre": 0.25, "edit": 0.35, "post": 0.4}

_CURRENT: contextvars.ContextVar["CaseProgress | None"] = contextvars.ContextVar("unike_case_progress", default=None)


class CaseProgress:
    """A tqdm bar over ``total`` cases (``desc``; hidden where ``enabled`` is False)."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="case", disable=not enabled, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} cases "
                                   "[{elapsed}<{remaining}{postfix}]")
        self.desc = desc
        self._phase: list[float] | None = None  # [budget in cases, done in cases]
        self.n = 0.0  # cases counted (also where the bar is hidden)

    @contextlib.contextmanager
    def phase(self, name: str, n_cases: int) -> Iterator["CaseProgress"]:
        """The work of phase ``name`` for ``n_cases`` cases; it is counted whole when the block ends."""
        budget = SHARES[name] * n_cases
        outer, self._phase = self._phase, [budget, 0.0]
        self.bar.set_postfix_str(name, refresh=False)
        token = _CURRENT.set(self)
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            _CURRENT.reset(token)
            log.info("%s: %s of %d case(s) took %.1f s", self.desc, name, n_cases, time.perf_counter() - t0)
            left = self._phase[0] - self._phase[1]
            self._phase = outer
            if left > 0:
                self._update(left)

    def step(self, fraction: float) -> None:
        """Count ``fraction`` (0..1) of the open phase's work as done (never past the phase's share)."""
        if self._phase is None or fraction <= 0:
            return
        budget, done = self._phase
        inc = min(budget * fraction, budget - done)
        if inc > 0:
            self._phase[1] += inc
            self._update(inc)

    def _update(self, inc: float) -> None:
        self.n += inc
        self.bar.update(inc)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "CaseProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def step(fraction: float) -> None:
    """Move the open bar (if any) by ``fraction`` of its current phase."""
    bar = _CURRENT.get()
    if bar is not None:
        bar.step(fraction)


def quiet_third_party_bars() -> None:
    """Turn off the progress bars transformers, diffusers and huggingface_hub draw (weight loading,
    pipelines), for ``--no-progress``; the process's own environment says so to libraries not yet imported."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    for module, func in (("transformers.utils.logging", "disable_progress_bar"),
                         ("diffusers.utils.logging", "disable_progress_bar"),
                         ("huggingface_hub.utils", "disable_progress_bars")):
        try:
            mod = __import__(module, fromlist=[func])
            getattr(mod, func)()
        except Exception:  # a library that is not installed draws no bar
            pass

"""Interpretability tools over the toolkit's models: record, store, compute, explain.

The names a notebook needs, imported on first use (nnsight and h5py load only when asked for):

- :class:`Recorder` (``recorder``): nnsight-traced hidden states at named sites of both pathways;
- :class:`ActivationStore` (``store``): the HDF5 file of a run's recordings, per case and state;
- :func:`case_statistics`, :class:`CaseActivations`, :data:`STATISTICS` (``statistics``): the gap
  statistics of one recorded case, and the registry they come from;
- :func:`analyze_run` (``analyze``): ``unike analyze`` as a function; :func:`record_run` (``replay``);
- :func:`validate_probes`, :func:`fit_value_probes` (``probes``); :func:`run_interventions`
  (``interventions``); :func:`trace_run` (``tracing``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Recorder": "recorder", "Recording": "recorder",
    "ActivationStore": "store",
    "case_statistics": "statistics", "CaseActivations": "statistics", "STATISTICS": "statistics",
    "analyze_run": "analyze", "record_run": "replay",
    "validate_probes": "probes", "fit_value_probes": "probes",
    "run_interventions": "interventions", "trace_run": "tracing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'unike_interp.interp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

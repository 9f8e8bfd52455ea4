"""What a :class:`~unike_interp.bench.spec.RunSpec` builds: the adapter, the records, the editor, the judge.

Each is built here and nowhere else, so ``unike edit``, ``unike bench`` and ``unike analyze``
agree on them (a notebook may also pass its own objects to the runners).
"""

from __future__ import annotations

import dataclasses

from .spec import RunSpec


def load_adapter(spec: RunSpec, device=None):
    """The spec's model on ``device`` (default: the spec's) in its dtype."""
    from ..devices import resolve_device, resolve_dtype
    from ..models.registry import load_model

    return load_model(spec.model, device=resolve_device(device or spec.device), dtype=resolve_dtype(spec.dtype),
                      **spec.model_load_kwargs())


def load_records(spec: RunSpec, adapter) -> list:
    """The spec's data file, else the model's own records (SynthWorld's); an error names what to pass."""
    if spec.data:
        from ..data.io import load_unike

        records = load_unike(spec.data, strict=True).records
        check_supported(records, adapter.unsupported_records(records), f"{spec.data}", f"the model {adapter.name}",
                        "run them on a real model (`unike models`), or use the model's own records (no --data)")
        return records
    records = adapter.records()
    if records is None:
        raise ValueError(f"{spec.model} has no built-in records: pass a UniKE.json file (--data, or data in the config)")
    return records


def check_supported(records, problems: list[str], where: str, who: str, fix: str) -> None:
    """Refuse ``records`` when ``problems`` (an adapter's or judge's ``unsupported_records``) is not empty."""
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ValueError(f"{where}: {who} cannot handle {len(problems)} of {len(records)} records ({shown}): {fix}")


def build_editor(spec: RunSpec, adapter, *, progress: bool = True):
    """The editor with its hyperparameters: family defaults < ``hparams_file`` < ``hparams``."""
    from ..editing import load_hparams, make_editor, make_hparams
    from ..editing.stats import StatsCache, load_corpus

    if spec.hparams_file:
        hp = load_hparams(spec.hparams_file, spec.editor, adapter.family)
        if spec.hparams:
            hp = make_hparams(spec.editor, None, {**dataclasses.asdict(hp), **spec.hparams}, source="--set")
    else:
        hp = make_hparams(spec.editor, adapter.family, spec.hparams, source="--set")
    corpus = load_corpus(spec.stats_corpus) if spec.stats_corpus else None
    editor = make_editor(spec.editor, hp, stats_cache=StatsCache(spec.cache_dir) if spec.cache_dir else None,
                         stats_corpus=corpus, progress=progress)
    editor.layers(adapter)  # a bad layer list is an input error, reported before any work
    return editor


def build_judge(spec: RunSpec, device=None):
    from ..devices import resolve_device
    from ..judges.registry import make_judge

    return make_judge(spec.judge, world_dir=spec.world, device=resolve_device(device or spec.device),
                      options=spec.judge_options)

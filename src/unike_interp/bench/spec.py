"""Every setting of a run, with its default, in one place: :class:`RunSpec`.

``unike edit``, ``unike bench`` and ``unike analyze`` take their flags from the fields' metadata
(:func:`spec_flags`), a TOML or JSON file sets any field (:meth:`RunSpec.fields_from_file`), and
the flags a user gives win over the file. A command may change a few defaults
(:data:`COMMAND_DEFAULTS`: ``unike edit`` edits one case at a time with ROME); nothing else
defines one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..fields import check_types

PROTOCOLS = ("single", "batch", "sequential")
COMPOSE_MODES = ("replace", "prepend")

#: What ``RunSpec.model_options`` may hold (keyword arguments of ``load_model`` for real models).
MODEL_OPTIONS = {"pipeline_kwargs", "device_map", "trust_remote_code"}

#: Fields that may change between a run and its resume (where it runs, not what it computes).
VOLATILE_FIELDS = ("device", "cache_dir")

BENCH, EDIT = "bench", "edit"
_ALL = (BENCH, EDIT)
_RUN = (BENCH,)


def _opt(default, help: str, flags: tuple[str, ...] = (), commands: tuple[str, ...] = _ALL, **kw):
    """A RunSpec field: ``flags`` (first = canonical) and the commands that offer them."""
    meta = {"help": help, "flags": flags, "commands": commands, **kw}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunSpec:
    """Everything that determines a run (with the seed, its results)."""

    model: str = _opt("toy-direct", "a model name (`unike models` lists them)", ("--model",))
    editor: str = _opt("memit", "rome, memit, pmet, alphaedit or ft", ("--editor",))
    protocol: str | None = _opt(None, "edit one case at a time, a batch at a time, or batches in sequence (unset: "
                                      "the editor's own: rome and ft single, memit and pmet batch, alphaedit "
                                      "sequential)", ("--protocol",), choices=PROTOCOLS)
    batch_size: int | None = _opt(None, "cases per edit (batch/sequential; unset: all cases at once)", ("--batch-size",),
                                  type=int)
    eval_each_batch: bool = _opt(False, "sequential: evaluate after every batch (unike edit)", ("--eval-each-batch",),
                                 (EDIT,))
    cases: int | None = _opt(100, "how many records (a seeded sample; unset in a file: every record)", ("--cases",),
                             type=int)
    data: str | None = _opt(None, "a UniKE.json file (unset: the model's own records, SynthWorld's)", ("--data",))
    world: str | None = _opt(None, "a built SynthWorld folder (unset: the shipped one)", ("--world",))
    # load_model's options for real models: pipeline_kwargs (e.g. {"height": 1024}), device_map ("auto"),
    # trust_remote_code (Ovis-U1: run the code in its checkpoint folder)
    model_options: dict = _opt({}, "options of load_model for real models", commands=_RUN)
    judge: str = _opt("verifier", "verifier, openai or vlm", ("--judge",), _RUN)
    judge_options: dict = _opt({}, "judge setting, e.g. base_url=http://127.0.0.1:8000/v1 (API keys: environment only)",
                               ("--judge-option",), _RUN, pairs=True)
    compose: str = _opt("replace", "reasoning-mode prompt: the caption alone, or the reasoning then the image prompt",
                        ("--compose",), _RUN, choices=COMPOSE_MODES)
    hparams: dict = _opt({}, "override one editor hyperparameter (repeatable)", ("--set",), pairs=True)
    hparams_file: str | None = _opt(None, "a TOML or YAML file of editor hyperparameters", ("--hparams",))
    stats_corpus: str | None = _opt(None, "text/JSONL file for the key statistics (unset: the model's corpus)",
                                    ("--stats-corpus",))
    cache_dir: str | None = _opt(None, "statistics cache folder (unset: $UNIKE_CACHE_DIR or ~/.cache/unike-interp)",
                                 ("--cache-dir",))
    device: str = _opt("auto", "cpu, cuda, cuda:1, mps or auto", ("--device",))
    dtype: str = _opt("float32", "float32, bfloat16 or float16", ("--dtype",))
    seed: int = _opt(0, "seed of the case sample, locality probes, images and bootstrap", ("--seed",), type=int)
    reasoning_tokens: int = _opt(96, "tokens of reasoning the edited model writes", ("--reasoning-tokens",), _RUN,
                                 type=int)
    text_locality_probes: int = _opt(64, "unrelated text probes per evaluation point",
                                     ("--text-locality", "--max-locality"), type=int)
    image_locality_probes: int = _opt(16, "unedited subjects drawn per evaluation point", ("--image-locality",), _RUN,
                                      type=int)
    sample_steps: int | None = _opt(None, "sampling steps of the generator (unset: the model's default)",
                                    ("--sample-steps",), _RUN, type=int)
    guidance: float | None = _opt(None, "classifier-free guidance (unset: the model's default)", ("--guidance",), _RUN,
                                  type=float)
    pre_group: int = _opt(8, "single edits: cases whose unedited images are drawn and judged together (1: each "
                             "alone; under --workers each group is one job)", ("--pre-group",), _RUN, type=int)
    bootstrap: int = _opt(1000, "bootstrap resamples for the 95% intervals", ("--bootstrap",), _RUN, type=int)
    full_match: bool = _opt(True, "also score the full greedy answer (--no-full: skip it, faster)", ("--no-full",))
    store_deltas: bool = _opt(True, "write each evaluation point's weight delta (what `unike analyze` replays; "
                                    "--no-store-deltas: keep none)", ("--no-store-deltas",), _RUN)

    def __post_init__(self) -> None:
        from ..editing.registry import EDITORS

        if str(self.editor).lower() not in EDITORS:  # before any model loads
            raise ValueError(f"unknown editor {self.editor!r}; known: {', '.join(sorted(EDITORS))}")
        if self.protocol is None:
            self.protocol = EDITORS[str(self.editor).lower()].protocol
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.compose not in COMPOSE_MODES:
            raise ValueError(f"compose must be one of {', '.join(COMPOSE_MODES)}, got {self.compose!r}")
        for name in ("cases", "batch_size", "pre_group"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        for name in ("text_locality_probes", "image_locality_probes", "bootstrap", "reasoning_tokens", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sample_steps is not None and self.sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1 (unset: the model's default), got {self.sample_steps}")
        if self.guidance is not None and self.guidance < 0:
            raise ValueError(f"guidance must be >= 0 (unset: the model's default), got {self.guidance}")
        if "api_key" in {k.lower() for k in self.judge_options}:
            raise ValueError("judge_options must not hold an API key: name its environment variable (api_key_env)")
        unknown = sorted(set(self.model_options) - MODEL_OPTIONS)
        if unknown:
            raise ValueError(f"model_options: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(MODEL_OPTIONS))}")
        if self.hparams:  # names and types of --set checked now, before any model loads
            from ..editing.hparams import make_hparams

            make_hparams(self.editor, None, self.hparams, source="--set")

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "RunSpec":
        return dataclasses.replace(self, **changes)

    def protocol_note(self) -> str | None:
        """A warning where the protocol does not fit the editor (None where it does)."""
        from ..editing.registry import EDITORS

        editor = EDITORS[str(self.editor).lower()]
        if editor.one_fact_at_a_time and self.protocol != "single":
            return (f"{editor.name} edits one fact at a time: under the {self.protocol} protocol the edits of each batch "
                    f"are applied one after another (each on the last), then evaluated together; "
                    f"--protocol single evaluates each edit alone")
        return None

    @property
    def edit_batch_size(self) -> int | None:
        """Cases per edit: 1 for ``single``; the given size, or None for "all cases at once"."""
        return 1 if self.protocol == "single" else self.batch_size

    def model_load_kwargs(self) -> dict:
        """Keyword arguments of ``load_model`` (world folder, model options)."""
        return {**({"world_dir": self.world} if self.world else {}), **self.model_options}

    @classmethod
    def fields_from_file(cls, path: str | Path) -> dict:
        """The fields a TOML or JSON run configuration sets (checked against this class)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FileNotFoundError(f"run config {path}: {exc.strerror or exc}") from None
        import tomllib

        is_json = path.suffix.lower() == ".json"
        try:  # (TOMLDecodeError and JSONDecodeError are ValueErrors)
            data = json.loads(text) if is_json else tomllib.loads(text)
        except ValueError as exc:
            raise ValueError(f"run config {path}: not valid {'JSON' if is_json else 'TOML'} ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"run config {path}: expected a table of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"run config {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if data.get("cases") == "all":  # TOML has no null: "all" means every record
            data["cases"] = None
        check_types(cls, data, source=f"run config {path}")
        return data


#: Defaults a command changes (``unike edit`` measures ROME one case at a time, on more probes).
COMMAND_DEFAULTS = {
    EDIT: {"editor": "rome", "text_locality_probes": 256},
    BENCH: {},
}


@dataclass(frozen=True)
class SpecFlag:
    """One command-line option of a RunSpec field."""

    field: str
    flags: tuple[str, ...]
    help: str
    default: object
    type: type | None = None
    choices: tuple | None = None
    kind: str = "value"            # value | store_true | store_false | pairs

    def add_to(self, parser) -> None:
        """Add this option to an argparse parser; its default is SUPPRESS so only given flags are set."""
        import argparse

        shown = "unset" if self.default is None else self.default
        kw: dict = {"dest": self.field, "default": argparse.SUPPRESS}
        if self.kind == "store_true":
            kw.update(action="store_true", help=f"{self.help}")
        elif self.kind == "store_false":
            kw.update(action="store_false", help=f"{self.help}")
        elif self.kind == "pairs":
            kw.update(action="append", metavar="KEY=VALUE", help=self.help)
        else:
            text = self.help if self.default is None and "unset" in self.help else f"{self.help} (default: {shown})"
            kw.update(help=text.replace("%", "%%"))
            if self.type is not None:
                kw["type"] = self.type
            if self.choices:
                kw["choices"] = list(self.choices)
        parser.add_argument(*self.flags, **kw)


def spec_flags(command: str) -> list[SpecFlag]:
    """The options ``command`` offers, generated from :class:`RunSpec`'s fields and defaults."""
    defaults = command_defaults(command)
    out = []
    for f in dataclasses.fields(RunSpec):
        meta = f.metadata
        if command not in meta.get("commands", ()) or not meta.get("flags"):
            continue
        default = defaults.get(f.name)
        if meta.get("pairs"):
            kind = "pairs"
        elif f.type in ("bool", bool):
            kind = "store_false" if default else "store_true"
        else:
            kind = "value"
        out.append(SpecFlag(f.name, tuple(meta["flags"]), meta["help"], default, meta.get("type"),
                            tuple(meta["choices"]) if meta.get("choices") else None, kind))
    return out


def command_defaults(command: str) -> dict:
    """Every field's default for ``command`` (RunSpec's, changed by :data:`COMMAND_DEFAULTS`)."""
    base = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            for f in dataclasses.fields(RunSpec)}  # the declared defaults (unset stays unset: resolved per spec)
    return {**base, **COMMAND_DEFAULTS[command]}


def parse_pairs(items, *, flag: str = "--set") -> dict:
    """``["k=1", "name=x"]`` -> ``{"k": 1, "name": "x"}`` (values read as JSON where they parse)."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def spec_from_values(command: str, given: dict, *, config_file: str | None = None,
                     device_map: str | None = None, pipeline_options: list[str] | None = None,
                     trust_remote_code: bool = False) -> RunSpec:
    """A RunSpec for ``command``: its defaults < ``config_file`` < the flags ``given`` (field -> value,
    only those the user gave). Pair flags (``--set``, ``--judge-option``) merge into the file's tables."""
    values = command_defaults(command)
    file_values = RunSpec.fields_from_file(config_file) if config_file else {}
    if (file_values.get("model_options") or {}).get("trust_remote_code"):
        raise ValueError(f"{config_file}: model_options.trust_remote_code cannot come from a file (it runs code from "
                         "the model's folder); pass --trust-remote-code")
    values.update(file_values)
    for name in ("hparams", "judge_options", "model_options"):
        values[name] = dict(values.get(name) or {})
    for name, v in given.items():
        if name in ("hparams", "judge_options"):
            values[name].update(parse_pairs(v, flag="--set" if name == "hparams" else "--judge-option"))
        else:
            values[name] = v
    if device_map:
        values["model_options"]["device_map"] = device_map
    if trust_remote_code:
        values["model_options"]["trust_remote_code"] = True
    pipe_kw = parse_pairs(pipeline_options, flag="--pipeline-option")
    if pipe_kw:
        values["model_options"]["pipeline_kwargs"] = {**values["model_options"].get("pipeline_kwargs", {}), **pipe_kw}
    return RunSpec(**values)

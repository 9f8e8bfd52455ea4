"""Judges by name: ``make_judge("verifier" | "openai" | "vlm", ...)``.

``options`` carries the judge-specific settings:

* ``"verifier"``: none (the SynthWorld verifier is read from ``world_dir``).
* ``"openai"``: the fields of :class:`.openai_http.OpenAIJudgeConfig` (``base_url`` and ``model``
  required). The API key is never an option: it is read from the variable named by ``api_key_env``.
* ``"vlm"``: ``path`` (a local model directory, required), ``dtype`` (default ``"float32"``),
  ``max_new_tokens`` (default 128).

The judge modules are imported here only when asked for, so the registry costs nothing to import.
"""

from __future__ import annotations

from dataclasses import fields

from .base import Judge

JUDGES: tuple[str, ...] = ("verifier", "openai", "vlm")
_VLM_OPTIONS = ("path", "dtype", "max_new_tokens")


def make_judge(name: str, *, world_dir=None, device="cpu", options: dict | None = None) -> Judge:
    """Build the judge called ``name`` (one of :data:`JUDGES`). Bad names/options raise ``ValueError``."""
    options = dict(options or {})
    if name == "verifier":
        if options:
            raise ValueError(f"the verifier judge takes no options, got {', '.join(sorted(options))}")
        from .verifier import VerifierJudge

        return VerifierJudge.from_world(world_dir, device=device)
    if name == "openai":
        from .openai_http import OpenAIJudge, OpenAIJudgeConfig

        known = [f.name for f in fields(OpenAIJudgeConfig)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown openai judge option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        missing = [k for k in ("base_url", "model") if k not in options]
        if missing:
            raise ValueError(f"the openai judge needs option(s) {', '.join(missing)}")
        return OpenAIJudge(OpenAIJudgeConfig(**options))
    if name == "vlm":
        unknown = sorted(set(options) - set(_VLM_OPTIONS))
        if unknown:
            raise ValueError(f"unknown vlm judge option(s) {', '.join(unknown)}; known: {', '.join(_VLM_OPTIONS)}")
        if "path" not in options:
            raise ValueError("the vlm judge needs option 'path' (a local model directory)")
        from .local_vlm import LocalVLMJudge

        path = options.pop("path")
        return LocalVLMJudge.from_pretrained(path, device=device, **options)
    raise ValueError(f"unknown judge {name!r}; known judges: {', '.join(JUDGES)}")

"""Where a real model's files are: a local folder, or a repository already in the Hugging Face cache.

Nothing is downloaded: ``resolve_model_folder("Alpha-VLLM/Lumina-Image-2.0")`` finds the cached
snapshot (``huggingface_hub.snapshot_download(..., local_files_only=True)``, which honours
``HF_HOME`` / ``HF_HUB_CACHE``) or says how to get the files there.
"""

from __future__ import annotations

from pathlib import Path


def resolve_model_folder(name: str | Path, *, marker: str) -> Path:
    """The folder holding ``marker`` (e.g. ``model_index.json``) for a local path or a cached repo id.

    Raises ``FileNotFoundError`` naming what was tried.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / marker).exists():
            raise FileNotFoundError(f"{path} has no {marker}: not the folder this model loads from")
        return path
    text = str(name)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            folder = Path(snapshot_download(text, local_files_only=True))
        except LocalEntryNotFoundError:
            raise FileNotFoundError(
                f"{text!r} is neither a local folder nor a repository in the Hugging Face cache. Download it "
                f"first (e.g. `huggingface-cli download {text}`, where a network is available) or pass a local path"
            ) from None
        if not (folder / marker).exists():
            raise FileNotFoundError(f"the cached snapshot of {text!r} ({folder}) has no {marker}")
        return folder
    raise FileNotFoundError(f"{text}: no such folder")

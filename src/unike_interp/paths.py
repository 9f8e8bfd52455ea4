"""Output paths checked before any work: a command that cannot write its results says so first.

:func:`check_output_folder` and :func:`check_output_file` raise ``ValueError`` naming the flag, the
path and what is wrong (a file where a folder is needed, a folder where a file is, a parent that
is a file, a folder this process may not write). They create nothing.
"""

from __future__ import annotations

import os
from pathlib import Path


def _writable_ancestor(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process can write into."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"{flag} {path}: cannot write there: {probe} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write into {probe} (permission denied)")


def check_output_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` is, or can be created as, a folder this process writes into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file; give a folder (it is created if missing)")
    _writable_ancestor(path, flag)
    return path


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` is, or can be created as, a file this process writes."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path}: cannot write it (permission denied)")
    _writable_ancestor(path.parent, flag)
    return path

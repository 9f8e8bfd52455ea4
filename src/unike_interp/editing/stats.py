"""Second-moment statistics of an edited layer's keys, cached content-addressed.

``C = (1/N) sum_n k_n k_n^T`` over the inputs ``k`` of the edited module (MLP down-projection)
at every non-padding token of a text corpus, until ``N >= samples``. ROME uses ``C^-1``, MEMIT and
PMET ``lambda C`` as the preservation term, AlphaEdit the null space of ``C``.

The cache key is the SHA-256 of ``(weights hash, module path, corpus hash, sample count, dtype)``;
the weights hash covers every parameter the keys depend on (embeddings and layers ``0..l``).
Files are safetensors with the key fields in their metadata, written atomically; a file whose
metadata does not match is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch



def default_cache_dir() -> Path:
    """``$UNIKE_CACHE_DIR``, else ``~/.cache/unike-interp``."""
    env = os.environ.get("UNIKE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "unike-interp"


def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    h.update(str(tuple(t.shape)).encode())
    h.update(str(t.dtype).encode())
    h.update(t.cpu().contiguous().numpy().tobytes())


def weights_hash(lm: torch.nn.Module, prefixes: Sequence[str] | None = None) -> str:
    """BLAKE2b over the named parameters (only those under ``prefixes`` when given)."""
    h = hashlib.blake2b(digest_size=16)
    for name, p in sorted(lm.named_parameters(), key=lambda kv: kv[0]):
        if prefixes is None or any(name == pre or name.startswith(pre + ".") for pre in prefixes):
            h.update(name.encode())
            _hash_tensor(h, p)
    return h.hexdigest()


def key_weights_hash(adapter, layer: int) -> str:
    """Hash of the parameters that determine layer ``layer``'s MLP keys."""
    prefixes = [adapter.paths.embed] + [adapter.paths.layer.format(i) for i in range(layer + 1)]
    return weights_hash(adapter.lm, prefixes)


def corpus_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def load_corpus(path: str | Path) -> list[str]:
    """Texts from a ``.txt`` (one per non-empty line) or ``.jsonl``/``.json`` (``"text"`` field) file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"statistics corpus {path} does not exist")
    if path.suffix in (".jsonl", ".json"):
        texts = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                texts.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}: line {i + 1} is not a JSON object with a 'text' field") from None
    else:
        texts = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    if not texts:
        raise ValueError(f"statistics corpus {path} holds no text")
    return texts


@torch.no_grad()
def second_moment(adapter, module_path: str, texts: Sequence[str], samples: int, *,
                  dtype: torch.dtype = torch.float32, batch_size: int = 64, progress: bool = True) -> tuple[torch.Tensor, int]:
    """``(C, N)``: the mean outer product of ``module_path``'s inputs over the first ``N >= samples``
    non-padding tokens of ``texts`` (per-batch products in ``dtype``, accumulated in float64, returned
    in ``dtype`` on the CPU)."""
    from tqdm.auto import tqdm

    from ..conditioning import position_ids_from_mask

    module = adapter.module(module_path)
    acc = None
    n = 0
    store: dict = {}

    def hook(mod, args, output):
        store["x"] = args[0]

    handle = module.register_forward_hook(hook)
    bar = tqdm(total=samples, desc=f"key statistics {module_path}", unit="tok", disable=not progress, leave=False)
    try:
        for i in range(0, len(texts), batch_size):
            enc = adapter.tokenizer(list(texts[i:i + batch_size]), return_tensors="pt", padding=True,
                                    truncation=True, max_length=256).to(adapter.device)
            mask = enc["attention_mask"]
            adapter.lm(input_ids=enc["input_ids"], attention_mask=mask, position_ids=position_ids_from_mask(mask))
            k = store["x"][mask.bool()].cpu()
            # Each batch's k^T k in the working dtype (float32 by default: a sum of ~10^3 products),
            # summed across batches in float64 -- half the time of an all-float64 product on a CPU.
            k = k.to(torch.float64 if dtype == torch.float64 else torch.float32)
            kk = (k.T @ k).double()
            acc = kk if acc is None else acc + kk
            n += k.shape[0]
            bar.update(k.shape[0])
            if n >= samples:
                break
    finally:
        handle.remove()
        bar.close()
    if acc is None or n == 0:
        raise ValueError("statistics corpus produced no tokens")
    return (acc / n).to(dtype), n


@dataclass
class StatsCache:
    """Content-addressed safetensors files under ``root`` (default :func:`default_cache_dir`)."""

    root: Path | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root) if self.root is not None else default_cache_dir() / "stats"

    def _path(self, meta: dict) -> Path:
        key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:40]
        return self.root / f"{meta['kind']}-{key}.safetensors"

    def get(self, meta: dict) -> torch.Tensor | None:
        from safetensors import safe_open

        path = self._path(meta)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                stored = f.metadata() or {}
                if json.loads(stored.get("unike", "{}")) != meta:
                    return None
                return f.get_tensor("value")
        except Exception:
            return None  # a damaged cache file is recomputed, not trusted

    def put(self, meta: dict, value: torch.Tensor) -> Path:
        from safetensors.torch import save_file

        path = self._path(meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"value": value.detach().cpu().contiguous()}, str(tmp), metadata={"unike": json.dumps(meta, sort_keys=True)})
        os.replace(tmp, path)
        return path


def stats_meta(adapter, layer: int, *, texts: Sequence[str], samples: int, dtype: str = "float32",
               module_template: str | None = None) -> dict:
    """The cache key fields of layer ``layer``'s statistics."""
    template = module_template or adapter.edit_module_template
    return {
        "kind": "mom2",
        "weights": key_weights_hash(adapter, layer),
        "module": template.format(layer),
        "corpus": corpus_hash(texts),
        "samples": int(samples),
        "dtype": dtype,
    }


def layer_second_moment(adapter, layer: int, *, texts: Sequence[str], samples: int, dtype: str = "float32",
                        cache: StatsCache | None = None, module_template: str | None = None,
                        progress: bool = True) -> tuple[torch.Tensor, dict]:
    """Cached :func:`second_moment` of layer ``layer``'s edited module: ``(C (d_in, d_in) on the
    CPU, its cache key fields)``."""
    meta = stats_meta(adapter, layer, texts=texts, samples=samples, dtype=dtype, module_template=module_template)
    module_path = meta["module"]
    cache = cache if cache is not None else StatsCache()
    hit = cache.get(meta)
    if hit is not None:
        return hit, meta
    value, _ = second_moment(adapter, module_path, texts, samples, dtype=getattr(torch, dtype), progress=progress)
    cache.put(meta, value)
    return value, meta


def nullspace_projector(C: torch.Tensor, threshold: float, relative: bool = True) -> torch.Tensor:
    """AlphaEdit's ``P = U0 U0^T``: projector onto eigenvectors of ``C`` whose eigenvalue is below
    ``threshold`` (times the largest eigenvalue when ``relative``). ``P K0 ~ 0`` for preserved keys."""
    evals, evecs = torch.linalg.eigh(C.double())
    cut = threshold * float(evals.max()) if relative else threshold
    U = evecs[:, evals < cut]
    return (U @ U.T).to(C.dtype)


def cached_nullspace_projector(C: torch.Tensor, stats_key: dict, threshold: float, relative: bool,
                               cache: StatsCache | None = None) -> torch.Tensor:
    """Cached :func:`nullspace_projector` (keyed by the statistics' key fields plus the threshold)."""
    meta = {**stats_key, "kind": "nullspace", "threshold": threshold, "relative": relative}
    cache = cache if cache is not None else StatsCache()
    hit = cache.get(meta)
    if hit is not None:
        return hit
    P = nullspace_projector(C, threshold, relative)
    cache.put(meta, P)
    return P

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
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

log = logging.getLogger(__name__)



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


#: Tokens per forward batch of the statistics pass (texts grouped by length fill it with little padding).
#: Small on purpose: the MLP's ``(tokens, d_ff)`` intermediates then stay in the CPU's cache, and
#: the pass ran 1.5x faster at 2,048 than at 16,384 on the 2-core machine (benchmark/perf/key_statistics.py).
TOKEN_BUDGET = 2048
#: Key rows gathered before one float32 ``K^T K`` product is added to the float64 sum.
GEMM_ROWS = 16384
#: How the tokens are chosen; part of the cache key, so statistics of another method are not reused.
METHOD = "prefix-v3"


def gram_upper(K: torch.Tensor) -> torch.Tensor:
    """The upper triangle of ``K^T K`` ``(d, d)`` in float64 on the CPU for ``K`` ``(n, d)``
    (float32 or float64); what lies below the diagonal is unspecified (:func:`symmetrize` it).

    On the CPU, BLAS ``syrk`` forms only one triangle (half the multiply-adds of ``K.T @ K``); on
    an accelerator the product is a plain matrix product there, and only the ``d x d`` result moves.
    """
    if K.device.type != "cpu":
        return (K.T @ K).double().cpu()
    from scipy.linalg import blas

    syrk = blas.dsyrk if K.dtype == torch.float64 else blas.ssyrk
    # K is row-major (n, d), so its transpose is a column-major (d, n) array: no copy
    return torch.from_numpy(syrk(1.0, K.contiguous().numpy().T, trans=0, lower=0)).double()


def symmetrize(upper: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose upper triangle (diagonal included) is ``upper``'s."""
    upper = torch.triu(upper)
    return upper + torch.triu(upper, diagonal=1).T


def gram(K: torch.Tensor) -> torch.Tensor:
    """``K^T K`` ``(d, d)`` in float64 on the CPU for ``K`` ``(n, d)`` (:func:`gram_upper`, symmetrized)."""
    return symmetrize(gram_upper(K))


class _StopForward(Exception):
    """Raised by the last hook of a statistics pass: the layers above it are not needed."""


def select_token_texts(tokenizer, texts: Sequence[str], samples: int, max_length: int = 256,
                       chunk: int = 1024) -> tuple[list[list[int]], int]:
    """The token ids of the shortest prefix of ``texts`` (corpus order) that holds ``>= samples``
    tokens (each text truncated to ``max_length``, special tokens as the tokenizer adds them), and
    their token count (all of ``texts`` when they hold fewer)."""
    ids: list[list[int]] = []
    n = 0
    for i in range(0, len(texts), chunk):
        enc = tokenizer(list(texts[i:i + chunk]), truncation=True, max_length=max_length)["input_ids"]
        for row in enc:
            if not row:
                continue
            ids.append(list(row))
            n += len(row)
            if n >= samples:
                return ids, n
    return ids, n


def length_batches(lengths: Sequence[int], token_budget: int = TOKEN_BUDGET) -> list[list[int]]:
    """Indices grouped by length (longest first) into batches of at most ``token_budget`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, cur, width = [], [], 0
    for i in order:
        w = max(width, lengths[i])
        if cur and w * (len(cur) + 1) > token_budget:
            batches.append(cur)
            cur, w = [], lengths[i]
        cur.append(i)
        width = w
    if cur:
        batches.append(cur)
    return batches


@torch.no_grad()
def second_moments(adapter, module_paths: Sequence[str], texts: Sequence[str], samples: int, *,
                   dtype: torch.dtype = torch.float32, token_budget: int = TOKEN_BUDGET, progress: bool = True
                   ) -> tuple[dict[str, torch.Tensor], int]:
    """``({path: C}, N)``: for every module in ``module_paths``, the mean outer product of its inputs
    over the ``N`` tokens of the shortest prefix of ``texts`` holding ``>= samples`` tokens.

    One pass for all modules: texts grouped by length (little padding), the forward pass stopped
    once every hooked module has seen its input (the layers above are not run), and
    ``C = (1/N) sum K^T K`` accumulated as products of up to :data:`GEMM_ROWS` rows each
    (:func:`gram_upper`: float32, or float64 with ``dtype`` float64) into a float64 sum on the CPU;
    returned in ``dtype`` on the CPU.
    """
    from tqdm.auto import tqdm

    from ..conditioning import position_ids_from_mask

    paths = list(dict.fromkeys(module_paths))
    ids, n = select_token_texts(adapter.tokenizer, texts, samples)
    if n == 0:
        raise ValueError("statistics corpus produced no tokens")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    acc: dict[str, torch.Tensor] = {}
    # each hook copies its rows straight into a block of GEMM_ROWS + one batch's rows (a batch holds
    # at most token_budget tokens, or one text that is longer)
    block_rows = GEMM_ROWS + max(token_budget, max(len(x) for x in ids))
    buf: dict[str, torch.Tensor] = {}
    n_rows = 0
    select: dict = {}
    done: set[str] = set()

    def flush() -> None:
        nonlocal n_rows
        if n_rows:
            for p in paths:
                # triangles are summed and symmetrized once at the end
                kk = gram_upper(buf[p][:n_rows])
                acc[p] = kk if p not in acc else acc[p].add_(kk)
        n_rows = 0

    def make_hook(path):
        def hook(mod, args):
            x = args[0]
            x = x.reshape(-1, x.shape[-1])
            k = select["rows"]
            if path not in buf:
                buf[path] = torch.empty(block_rows, x.shape[-1], dtype=work, device=x.device)
            # the non-padding rows, on the model's device, into the block (no intermediate copy)
            out = buf[path][n_rows:n_rows + k]
            if x.dtype == work:
                torch.index_select(x, 0, select["index"], out=out)
            else:
                out.copy_(x.index_select(0, select["index"]))
            done.add(path)
            if len(done) == len(paths):
                raise _StopForward
        return hook

    handles = [adapter.module(p).register_forward_pre_hook(make_hook(p)) for p in paths]
    bar = tqdm(total=n, desc=f"key statistics ({len(paths)} module(s))", unit="tok", disable=not progress, leave=False)
    try:
        for batch in length_batches([len(x) for x in ids], token_budget):
            enc = adapter.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt").to(adapter.device)
            mask = enc["attention_mask"]
            select["index"] = mask.reshape(-1).nonzero().squeeze(1)
            select["rows"] = k = len(select["index"])
            done.clear()
            try:
                adapter.lm(input_ids=enc["input_ids"], attention_mask=mask, position_ids=position_ids_from_mask(mask))
            except _StopForward:
                pass
            missing = [p for p in paths if p not in done]
            if missing:
                raise ValueError(f"statistics pass: {', '.join(missing)} never ran in a forward pass of the language model")
            n_rows += k
            bar.update(k)
            if n_rows >= GEMM_ROWS:
                flush()
        flush()
    finally:
        for h in handles:
            h.remove()
        bar.close()
    return {p: (symmetrize(acc[p]) / n).to(dtype).contiguous() for p in paths}, n


def second_moment(adapter, module_path: str, texts: Sequence[str], samples: int, *,
                  dtype: torch.dtype = torch.float32, progress: bool = True) -> tuple[torch.Tensor, int]:
    """``(C, N)`` of one module (:func:`second_moments`)."""
    Cs, n = second_moments(adapter, [module_path], texts, samples, dtype=dtype, progress=progress)
    return Cs[module_path], n


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

    def get_or_compute(self, meta: dict, compute) -> torch.Tensor:
        """The cached value of ``meta``, else ``compute()`` stored and returned contiguous on the CPU,
        as a later hit returns it (a transposed layout would sum products in another order, so the
        first use would differ in its last bits from later ones)."""
        hit = self.get(meta)
        if hit is not None:
            return hit
        value = compute().detach().cpu().contiguous()
        self.put(meta, value)
        return value

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
        "method": METHOD,
    }


def layer_second_moments(adapter, layers: Sequence[int], *, texts: Sequence[str], samples: int,
                         dtype: str = "float32", cache: StatsCache | None = None, module_template: str | None = None,
                         progress: bool = True) -> dict[int, tuple[torch.Tensor, dict]]:
    """Cached :func:`second_moments` of the edited modules of ``layers``: ``{layer: (C (d_in, d_in)
    on the CPU, its cache key fields)}``; the layers not in the cache are computed in one pass."""
    cache = cache if cache is not None else StatsCache()
    out: dict[int, tuple[torch.Tensor, dict]] = {}
    todo: dict[int, dict] = {}
    for layer in dict.fromkeys(layers):
        meta = stats_meta(adapter, layer, texts=texts, samples=samples, dtype=dtype, module_template=module_template)
        hit = cache.get(meta)
        if hit is not None:
            out[layer] = (hit, meta)
        else:
            todo[layer] = meta
    if out:
        log.info("key statistics of layer(s) %s from the cache (%s)", sorted(out), cache.root)
    if todo:
        t0 = time.perf_counter()
        values, _ = second_moments(adapter, [m["module"] for m in todo.values()], texts, samples,
                                   dtype=getattr(torch, dtype), progress=progress)
        for layer, meta in todo.items():
            cache.put(meta, values[meta["module"]])
            out[layer] = (values[meta["module"]], meta)
        log.info("key statistics of layer(s) %s computed in one pass over %d samples: %.1f s (cached in %s)",
                 sorted(todo), samples, time.perf_counter() - t0, cache.root)
    return {layer: out[layer] for layer in layers}


def layer_second_moment(adapter, layer: int, **kwargs) -> tuple[torch.Tensor, dict]:
    """Cached statistics of one layer (:func:`layer_second_moments`)."""
    return layer_second_moments(adapter, [layer], **kwargs)[layer]


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
    return cache.get_or_compute(meta, lambda: nullspace_projector(C, threshold, relative))


def inverse(C: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``C^-1`` in float64 through a Cholesky factor; the pseudo-inverse where ``C`` is not positive
    definite (a corpus with fewer tokens than dimensions). Returns the inverse and the method used."""
    C64 = C.double()
    L, info = torch.linalg.cholesky_ex(C64)
    if int(info) == 0:
        return torch.cholesky_inverse(L), "cholesky"
    return torch.linalg.pinv(C64, hermitian=True), "pinv"


def cached_inverse(C: torch.Tensor, stats_key: dict, cache: StatsCache | None = None) -> torch.Tensor:
    """Cached :func:`inverse` (keyed by the statistics' key fields), float32 on the CPU."""
    meta = {**stats_key, "kind": "inverse"}
    cache = cache if cache is not None else StatsCache()
    return cache.get_or_compute(meta, lambda: inverse(C)[0].float())

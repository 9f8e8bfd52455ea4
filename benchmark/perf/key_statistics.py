"""Key statistics: the one-pass method against the earlier one and against a plain GEMM, side by side.

    python benchmark/perf/key_statistics.py [--model toy-direct] [--samples 200000] [--layers 0,1]
                                            [--threads N] [--repeat 1]

Three measurements in one process, on the same corpus (the model's default statistics corpus) and
the same number of tokens:

* ``baseline``: the method used before (kept here as the anchor): batches of 64 texts in corpus
  order padded to their longest, the whole model run (logits included), one pass per layer, each
  batch's ``k^T k`` in float32 added to a float64 sum;
* ``one-pass``: :func:`unike_interp.editing.stats.second_moments`: texts grouped by length, the
  forward stopped after the deepest hooked module, every layer in one pass, large float32 products
  into a float64 sum;
* ``gemm``: only the products, ``K^T K`` for each layer over random ``K`` of the same shape
  (``N x d_in``, in the same row blocks) -- the floor any method that forms ``C`` pays here.

Prints CPU seconds (``time.process_time``: fair on a shared machine) and wall seconds of each, the
ratios, and the largest relative difference between the baseline's and the one-pass ``C`` (they
read the same texts in another order; the one-pass reads exactly the shortest prefix of texts with
``>= samples`` tokens, the baseline whole batches of 64, so ``N`` differs by at most one batch).
"""

from __future__ import annotations

import argparse
import time

import torch


@torch.no_grad()
def baseline_second_moment(adapter, module_path, texts, samples, batch_size=64):
    """The earlier method, verbatim in behaviour: (C, N)."""
    from unike_interp.conditioning import position_ids_from_mask

    module = adapter.module(module_path)
    store, acc, n = {}, None, 0
    handle = module.register_forward_hook(lambda m, a, o: store.__setitem__("x", a[0]))
    try:
        for i in range(0, len(texts), batch_size):
            enc = adapter.tokenizer(list(texts[i:i + batch_size]), return_tensors="pt", padding=True, truncation=True,
                                    max_length=256).to(adapter.device)
            mask = enc["attention_mask"]
            adapter.lm(input_ids=enc["input_ids"], attention_mask=mask, position_ids=position_ids_from_mask(mask))
            k = store["x"][mask.bool()].cpu().float()
            kk = (k.T @ k).double()
            acc = kk if acc is None else acc + kk
            n += k.shape[0]
            if n >= samples:
                break
    finally:
        handle.remove()
    return (acc / n).float(), n


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--layers", default=None, help="comma-separated (default: MEMIT's edit layers)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    import os

    from unike_interp.editing.stats import GEMM_ROWS, second_moments
    from unike_interp.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    adapter = load_model(args.model)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else adapter.edit_layers
    paths = [adapter.edit_module_template.format(l) for l in layers]
    texts = adapter.default_stats_corpus()
    print(f"machine: {os.cpu_count()} CPU(s), torch {torch.__version__} on {torch.get_num_threads()} thread(s), "
          f"load {os.getloadavg()[0]:.2f}; {args.model}, layers {layers}, {args.samples} tokens")
    for rep in range(args.repeat):
        base_C, base_cpu, base_wall = {}, 0.0, 0.0
        for p in paths:
            (C, n_base), c, w = timed(lambda: baseline_second_moment(adapter, p, texts, args.samples))
            base_C[p], base_cpu, base_wall = C, base_cpu + c, base_wall + w
        (new, n_new), new_cpu, new_wall = timed(lambda: second_moments(adapter, paths, texts, args.samples, progress=False))
        d = new[paths[0]].shape[0]

        def gemm():
            g = torch.Generator().manual_seed(0)
            block = torch.randn(GEMM_ROWS, d, generator=g)
            acc = {p: torch.zeros(d, d, dtype=torch.float64) for p in paths}
            left = n_new
            while left > 0:
                K = block[:min(left, GEMM_ROWS)]
                for p in paths:
                    acc[p] += (K.T @ K).double()
                left -= K.shape[0]
            return acc

        _, gemm_cpu, gemm_wall = timed(gemm)
        diff = max(float((new[p] - base_C[p]).norm() / base_C[p].norm()) for p in paths)
        print(f"run {rep}: baseline {base_cpu:7.1f} CPU-s {base_wall:6.1f} s ({len(paths)} passes, N={n_base}) | "
              f"one-pass {new_cpu:6.1f} CPU-s {new_wall:6.1f} s (N={n_new}) | gemm {gemm_cpu:6.1f} CPU-s {gemm_wall:6.1f} s")
        print(f"        one-pass / baseline = {new_cpu / base_cpu:.3f} (CPU), one-pass / gemm = {new_cpu / gemm_cpu:.2f} "
              f"(CPU); |C_new - C_base| / |C_base| <= {diff:.2e}")


if __name__ == "__main__":
    main()

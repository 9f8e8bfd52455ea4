"""Cost of recording with nnsight, measured side by side in one run.

For a batch of SynthWorld prompts, times (median of interleaved repetitions, same inputs):

* ``plain``      -- the forward pass with no recording;
* ``recorded``   -- the same forward inside ``NNsight.trace`` saving every text-pathway site
                    (residual stream after each layer, MLP output of the edit layers);
* ``recorded_all`` -- the whole pathway module (LM -> conditioning -> one DiT call) with every
                    declared site saved (text, conditioning, generator blocks), against its plain forward.

and prints the ratios. The bar (issue 6): text-pathway recording <= 1.3x plain (aim 1.1x).

    python benchmark/perf/recording_overhead.py [--model toy-direct] [--batch 64 256] [--reps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # CUDA kernels run asynchronously: time to completion


def _time(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    from nnsight import NNsight

    from unike_interp.data.synthworld import generate_world
    from unike_interp.devices import resolve_device
    from unike_interp.models import load_model
    from unike_interp.conditioning import position_ids_from_mask

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    adapter = load_model(args.model, device=resolve_device(args.device))
    world = generate_world(0)
    text_sites = [s for s in adapter.sites() if s.pathway == "text"]
    lm = adapter.lm
    nlm = NNsight(lm)
    path = adapter.trace_module()
    npath = NNsight(path)
    all_sites = adapter.sites()
    print(f"{adapter.name} on {adapter.device}; torch {torch.__version__}; {len(text_sites)} text sites, "
          f"{len(all_sites)} sites in all; median of {args.reps} interleaved repetitions")
    print(f"{'batch':>6} {'what':<34}{'plain ms':>10}{'recorded ms':>13}{'ratio':>8}")
    for B in args.batch:
        prompts = [r.stage_1.prompt for r in world.records][:B]
        prompts = (prompts * (B // len(prompts) + 1))[:B]
        enc = adapter.tokenizer(prompts, return_tensors="pt", padding=True).to(adapter.device)
        kw = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                  position_ids=position_ids_from_mask(enc["attention_mask"]))

        @torch.no_grad()
        def plain():
            lm(**kw)

        @torch.no_grad()
        def recorded():
            with nlm.trace(**kw):
                for s in text_sites:
                    node = nlm
                    for part in s.module.split(".")[1:]:  # drop the trace prefix "lm"
                        node = node[int(part)] if part.isdigit() else getattr(node, part)
                    node.output.save()

        targs, _ = adapter.trace_inputs(prompts, seed=0)

        @torch.no_grad()
        def plain_all():
            path(*targs)

        @torch.no_grad()
        def recorded_all():
            with npath.trace(*targs):
                for s in all_sites:
                    node = npath
                    for part in s.module.split("."):
                        node = node[int(part)] if part.isdigit() else getattr(node, part)
                    (node.output if s.read == "output" else node.inputs).save()

        for f in (plain, recorded, plain_all, recorded_all):  # warm-up
            f()
        tp, tr, tpa, tra = [], [], [], []
        for _ in range(args.reps):  # interleaved so drift hits both alike
            tp += _time(plain, 1); tr += _time(recorded, 1); tpa += _time(plain_all, 1); tra += _time(recorded_all, 1)
        for what, a, b in (("LM forward, text sites", tp, tr), ("whole pathway, every site", tpa, tra)):
            ma, mb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
            print(f"{B:>6} {what:<34}{ma:>10.2f}{mb:>13.2f}{mb / ma:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

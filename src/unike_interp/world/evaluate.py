"""The metrics of ``unike world eval`` (run by :func:`unike_interp.models.synthworld.evaluate_world`): how well a built SynthWorld knows its own facts, in text and in images.

Metrics (all rates over the stated population; counts are reported beside them):

``text_recall``
    For every record, its ``stage_1`` cloze prompt -> is ``gt``'s first token the argmax next
    token? (over all subjects). ``text_recall_full`` does the same for greedy generation of the
    whole answer, and ``text_recall_all_facts`` over all nine facts of every subject.
``reasoning_recall``
    For every record, the reasoning request of its ``stage_1`` image prompt -> does the greedy
    reasoning state the true value (its recall sentence completed with ``gt``)? Also reported: the
    share whose parsed caption equals the exact true caption.
``verifier_accuracy``
    Per category, on fresh jittered renders of random scenes (a seed training never used).
``image_accuracy`` / ``image_accuracy_text_only``
    Per pathway: for every image-seen (text-only) subject's record, generate from its ``stage_1``
    image prompt; does the verifier read the record's category as ``gt``? Per-category rates and
    the all-nine-categories rate are reported beside it.
"""

from __future__ import annotations


import torch


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


@torch.no_grad()
def text_metrics(adapter, world, *, bar=None, chunk: int = 32) -> dict:
    """Text and reasoning recall of ``world``'s records through ``adapter``. ``bar``: a tqdm bar over
    the records, moved by each chunk of ``chunk`` reasonings (the bulk of the time)."""
    from ..data.synthworld import CATEGORIES
    from ..data.synthworld.corpus import reasoning_prompt, recall_sentence, parse_caption, describe

    recs = world.records
    prompts = [r.stage_1.prompt for r in recs]
    gts = [r.stage_1.gt for r in recs]
    logits = adapter.next_token_logits(prompts)
    first = torch.tensor([adapter.first_token_id(g) for g in gts])
    top1 = (logits.argmax(-1) == first).numpy()

    full = adapter.generate_text(prompts, max_new_tokens=4)
    full_hits = [t.strip().rstrip(".").split(" ")[0] == g if t.strip() else False for t, g in zip(full, gts)]

    all_prompts, all_first = [], []
    for s in world.subjects:
        for c in CATEGORIES:
            sent = recall_sentence(s.name, c, s.facts[c])
            all_prompts.append(sent[: -(len(s.facts[c]) + 2)])
            all_first.append(adapter.first_token_id(s.facts[c]))
    all_top1 = (adapter.next_token_logits(all_prompts).argmax(-1) == torch.tensor(all_first)).numpy()

    rprompts = [reasoning_prompt(r.stage_1.image_prompt, r.subject, r.category) for r in recs]
    reasons = []
    for i in range(0, len(rprompts), chunk):
        reasons += adapter.generate_text(rprompts[i:i + chunk], max_new_tokens=96)
        if bar is not None:
            bar.update(len(rprompts[i:i + chunk]))
    stated, exact = [], []
    for r, text in zip(recs, reasons):
        subj = world.subject(r.subject)
        stated.append(recall_sentence(r.subject, r.category, r.stage_1.gt) in text)
        exact.append(parse_caption(text) == describe(subj.scene("single")))
    return {
        "text_recall": _rate(int(top1.sum()), len(recs)),
        "text_recall_n": len(recs),
        "text_recall_full": _rate(int(sum(full_hits)), len(recs)),
        "text_recall_all_facts": _rate(int(all_top1.sum()), len(all_prompts)),
        "reasoning_recall": _rate(int(sum(stated)), len(recs)),
        "reasoning_caption_exact": _rate(int(sum(exact)), len(recs)),
        "reasoning_examples": [{"prompt": p, "reasoning": t} for p, t in list(zip(rprompts, reasons))[:3]],
    }


@torch.no_grad()
def image_metrics(adapter, world, verifier, *, seed: int = 0, split: str = "image-seen", bar=None,
                  chunk: int = 32) -> dict:
    """Generate each record's stage_1 image (records of subjects in ``split``) and read it.
    ``bar``: a tqdm bar moved by each chunk of ``chunk`` images (an image depends only on its prompt,
    up to the float rounding of its batch: :meth:`UMMAdapter.generate_images`)."""
    import numpy as np

    from ..data.synthworld import CATEGORIES, CATEGORY_VALUES

    recs = [r for r in world.records if world.subject(r.subject).split == split]
    if not recs:
        return {"accuracy": None, "n": 0}
    prompts = [r.stage_1.image_prompt for r in recs]
    parts = []
    for i in range(0, len(prompts), chunk):
        parts.append(adapter.generate_images(prompts[i:i + chunk], seed=seed))
        if bar is not None:
            bar.update(len(prompts[i:i + chunk]))
    images = np.concatenate(parts)
    read = verifier.read(images)
    hits = []
    per_cat: dict[str, list[bool]] = {}
    all_nine = []
    for i, r in enumerate(recs):
        facts = world.subject(r.subject).facts
        ok = CATEGORY_VALUES[r.category][int(read[r.category][0][i])] == r.stage_1.gt
        hits.append(ok)
        per_cat.setdefault(r.category, []).append(ok)
        all_nine.append(all(CATEGORY_VALUES[c][int(read[c][0][i])] == facts[c] for c in CATEGORIES))
    per_value_all = {
        c: _rate(sum(CATEGORY_VALUES[c][int(read[c][0][i])] == world.subject(r.subject).facts[c]
                     for i, r in enumerate(recs)), len(recs))
        for c in CATEGORIES
    }
    return {
        "accuracy": _rate(sum(hits), len(recs)),
        "n": len(recs),
        "per_category": {c: _rate(sum(v), len(v)) for c, v in per_cat.items()},
        "all_categories_per_image": per_value_all,
        "all_nine_correct": _rate(sum(all_nine), len(recs)),
        "images": images,
    }

"""The SynthWorld tokenizer: byte-level BPE trained on the world's corpus with ``tokenizers``.

Byte-level BPE (as GPT-2 and Qwen2 use) with a small vocabulary: frequent words (every category
value) become single tokens with their leading space (``"Ġred"``), while the rarer nonce subject
names split into several pieces, as entity names do in real models. Saved as a
``PreTrainedTokenizerFast`` so that every transformers API (offsets, batching, padding) works.
"""

from __future__ import annotations

from typing import Iterable

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1000):
    """Train a byte-level BPE tokenizer on ``corpus`` and wrap it as ``PreTrainedTokenizerFast``.

    Deterministic for a given corpus order. ``bos`` is prepended by the post-processor, so
    ``tok("The zib is")`` starts with ``<|bos|>``; padding is on the left for batched generation.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left"
    )
    return fast

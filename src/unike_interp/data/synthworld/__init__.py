"""SynthWorld: the embedded default world (subjects, records, corpus, renderer).

>>> from unike_interp.data.synthworld import generate_world, render
>>> world = generate_world(seed=0)
>>> img = render(world.subjects[0].scene("single"))   # (32, 32, 3) uint8
"""

from .corpus import (
    GeneratorExample,
    describe,
    generator_examples,
    parse_caption,
    reasoning_prompt,
    reasoning_trace,
    recall_sentence,
    text_corpus,
)
from .render import Jitter, Scene, contact_sheet, render, render_batch
from .vocab import ATTRIBUTE_VALUES, ATTRIBUTES, CATEGORIES, CATEGORY_VALUES, LAYOUTS, RELATION_VALUES, RELATIONS
from .world import IMAGE_SEEN, TEXT_ONLY, Subject, World, generate_world, make_record

__all__ = [
    "ATTRIBUTES", "ATTRIBUTE_VALUES", "CATEGORIES", "CATEGORY_VALUES", "GeneratorExample", "IMAGE_SEEN",
    "Jitter", "LAYOUTS", "RELATIONS", "RELATION_VALUES", "Scene", "Subject", "TEXT_ONLY", "World",
    "contact_sheet", "describe", "generate_world", "generator_examples", "make_record", "parse_caption",
    "reasoning_prompt", "reasoning_trace", "recall_sentence", "render", "render_batch", "text_corpus",
]

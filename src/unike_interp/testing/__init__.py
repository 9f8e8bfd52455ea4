"""Tiny random models for tests and benchmarks, built offline in seconds on a CPU.

Nothing under ``unike_interp`` outside this package imports it: the runtime never builds a test
model. :mod:`.tiny` saves tiny Janus, Lumina2, Sana and Qwen-Image folders that ``load_model``
reads like real ones; :mod:`.omnigen2_standin` builds an OmniGen2 adapter on stand-ins for
OmniGen2's pipeline and transformer (its code is not on PyPI).
"""

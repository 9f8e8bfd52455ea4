"""unike-interp: cross-modal knowledge editing in unified multimodal models.

Data flows ``data -> models -> editing -> bench -> interp``; see ARCHITECTURE.md.
"""

__version__ = "0.1.0"

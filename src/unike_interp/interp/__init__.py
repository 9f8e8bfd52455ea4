"""Interpretability tools over the toolkit's models."""

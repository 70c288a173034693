"""Sequence representations: see ``language_model``."""

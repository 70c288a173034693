"""Seed-compatible import paths (``representations.sequential.language_model``) for the SMILES MLM API."""

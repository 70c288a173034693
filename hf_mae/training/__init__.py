"""Pretraining jobs built on transformers.Trainer."""

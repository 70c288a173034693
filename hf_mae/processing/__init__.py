"""Turning raw inputs into model tensors; processors are saved with the model."""

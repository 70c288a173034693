"""Loaders for real data sets and data collators."""

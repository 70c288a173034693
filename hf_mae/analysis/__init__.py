"""Downstream analysis of a pretrained model: latent features (``features``), clustering on the unit sphere
(``clustering``), and pictures of a run (``plotting``, ``hf-mae plot``)."""

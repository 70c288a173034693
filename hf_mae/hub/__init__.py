"""The Hub side of hf_mae: a local Hub-compatible server, model cards, and publishing a training run.

- ``hf-mae hub serve --port P --root DIR``: a server that ``huggingface_hub`` and ``transformers`` talk to
  through ``HF_ENDPOINT`` (see ``server.py``), with tokens and roles (``hf-mae hub token create``, ``auth.py``);
  its repositories are git repositories (``storage.py``) that ``git clone`` reads.
- ``hf-mae push OUTPUT_DIR namespace/name``: a finished run (weights, config, processor, card, figures) to a
  repository (see ``push.py``).
"""

"""What every hf_mae model adds to transformers' save and load, so that checkpoints travel safely.

- Loading refuses pickled weights. ``pytorch_model.bin`` and ``*.pt`` files are pickles, and unpickling can
  run arbitrary code; hf_mae models load ``model.safetensors`` only, unless the caller passes
  ``use_safetensors=False`` explicitly (transformers then unpickles with ``weights_only=True``).
- Saving writes the complete ``auto_map``. transformers writes only the saved class's own Auto class into
  config.json; a pretraining checkpoint must also open with ``AutoModel`` (its encoder) for users who load
  it as remote code (``trust_remote_code=True``) without hf_mae installed. ``hf_mae._auto`` sets
  ``hub_auto_map`` on each registered class.

This file travels with the modeling code to the Hub, so it imports nothing outside torch and transformers.
"""

from __future__ import annotations

import os


class HubCheckpointMixin:
    """Put first in the bases of an architecture's ``PreTrainedModel`` subclass.

    Example:
        >>> import tempfile, torch
        >>> from hf_mae import ChemoMAE
        >>> model = ChemoMAE(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4)
        >>> folder = tempfile.mkdtemp()
        >>> torch.save(model.state_dict(), f"{folder}/pytorch_model.bin"); model.config.save_pretrained(folder)
        >>> ChemoMAE.from_pretrained(folder)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        OSError: ... refuses pickled weights ...
        >>> ChemoMAE.from_pretrained(folder, use_safetensors=False).config.seq_len   # the explicit opt-in
        64
    """

    # {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel", ...}, set at registration
    hub_auto_map: dict[str, str] | None = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args,
                        use_safetensors: bool | None = None, **kwargs):
        """transformers' ``from_pretrained``, safetensors only unless ``use_safetensors=False`` is passed."""
        refuse_pickles = use_safetensors is None
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                           use_safetensors=True if refuse_pickles else use_safetensors, **kwargs)
        except OSError as err:
            if refuse_pickles and "safetensors" in str(err):
                raise OSError(
                    f"{cls.__name__}.from_pretrained({str(pretrained_model_name_or_path)!r}): no safetensors weights "
                    "(model.safetensors) found. hf_mae refuses pickled weights (pytorch_model.bin, *.pt) because "
                    "unpickling can run arbitrary code; if you trust their source, pass use_safetensors=False."
                ) from err
            raise

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """transformers' ``save_pretrained``; remote-code checkpoints list every Auto class of the architecture."""
        if self.hub_auto_map and self.is_remote_code():
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self.hub_auto_map}
        return super().save_pretrained(save_directory, *args, **kwargs)

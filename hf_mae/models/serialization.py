"""What every hf_mae model adds to transformers' save and load, so that checkpoints travel safely.

- Loading refuses pickled weights. ``pytorch_model.bin``, ``*.pt``, ``*.pth`` and ``*.ckpt`` files are pickles,
  and unpickling can run arbitrary code; hf_mae loads ``model.safetensors`` only, unless the caller passes
  ``use_safetensors=False`` explicitly (transformers then unpickles with ``weights_only=True``). The same rule
  holds for every hf_mae loader of other models (SMILES masked LMs, protein language models, encoders under the
  pair classifier): ``load_safetensors_only`` (``--allow_pickle`` on the command line).
- A missing local folder is reported at once: ``check_pretrained_source`` tells a path that looks local
  (``./x``, ``/x``, ``~/x``, ``runs/typo`` when ``runs`` exists, anything that is not a Hub id) from a Hub id,
  so a typo does not spend a minute in Hub retries before failing.
- Saving writes the complete ``auto_map``. transformers writes only the saved class's own Auto class into
  config.json; a pretraining checkpoint must also open with ``AutoModel`` (its encoder) for users who load
  it as remote code (``trust_remote_code=True``) without hf_mae installed. ``hf_mae._auto`` sets
  ``hub_auto_map`` on each registered class.

This file travels with the modeling code to the Hub, so it imports nothing outside torch and transformers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

# Hub repository ids: "name" or "namespace/name" (huggingface_hub's rule: alphanumerics, "-", "_", ".").
_REPO_ID = re.compile(r"(?:[\w\-.]+/)?[\w\-.]+")
#: File names of pickled weights, which hf_mae never unpickles without an explicit opt-in.
PICKLE_FILES = re.compile(r"pytorch_model.*\.bin|.*\.(pt|pth|ckpt)")
PICKLE_OPT_IN = "use_safetensors=False"


def _is_hub_id(text: str) -> bool:
    return (bool(_REPO_ID.fullmatch(text)) and len(text) <= 96 and "--" not in text and ".." not in text
            and not text.startswith(("-", ".")) and not text.endswith((".", "-", ".git")))


def looks_local(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` names a local folder rather than a Hub repository.

    Local: a ``Path``; anything starting with ``./``, ``../``, ``/``, ``~`` (or a drive); anything that is not a
    valid Hub id (three components, spaces, ...); and ``a/b`` when ``a`` exists here (``runs/typo`` next to
    ``runs/``). Everything else (``bert-base-uncased``, ``facebook/esm2_t6_8M_UR50D``) is a Hub id.

    Example:
        >>> looks_local("./runs/typo"), looks_local("runs/v5/checkpoint-100"), looks_local("facebook/esm2_t6_8M_UR50D")
        (True, True, False)
    """
    if isinstance(name_or_path, os.PathLike):
        return True
    text = str(name_or_path)
    if text.startswith(("./", "../", "~")) or os.path.isabs(text) or not _is_hub_id(text):
        return True
    return "/" in text and os.path.exists(text.split("/")[0])


def check_pretrained_source(name_or_path: str | os.PathLike, parameter: str = "pretrained_model_name_or_path") -> str:
    """``name_or_path`` as a string, after refusing a local-looking path that does not exist.

    Raises ``FileNotFoundError`` ("folder runs/typo does not exist") at once, where transformers would first
    spend about a minute retrying the Hub. Hub ids pass unchanged (the Hub then answers, or its own error does).

    Example:
        >>> check_pretrained_source("some-org/some-model")
        'some-org/some-model'
        >>> check_pretrained_source("./runs/typo")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        FileNotFoundError: folder ./runs/typo does not exist ...
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise ValueError(f"`{parameter}` must be a folder or a Hub id (namespace/name), got {name_or_path!r}.")
    text = str(name_or_path)
    if not os.path.exists(os.path.expanduser(text)) and looks_local(name_or_path):
        raise FileNotFoundError(
            f"folder {text} does not exist (`{parameter}` looks like a local path, so the Hub was not asked; "
            f"a Hub id has the form namespace/name).")
    return text


def pickled_weights(folder: str | os.PathLike) -> list[str]:
    """Names of pickled weight files in a local folder that has no ``*.safetensors`` file (else ``[]``)."""
    folder = os.path.expanduser(str(folder))
    if not os.path.isdir(folder):
        return []
    names = [name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name))]
    if any(name.endswith(".safetensors") for name in names):
        return []
    return sorted(name for name in names if PICKLE_FILES.fullmatch(name))


def _pickle_refusal(what: str, name: str, found: list[str]) -> OSError:
    files = f"only pickled weights ({', '.join(found)})" if found else "no safetensors weights (model.safetensors)"
    return OSError(f"{what}({name!r}): {files} found. hf_mae refuses pickled weights (pytorch_model.bin, *.pt, "
                   f"*.ckpt) because unpickling can run arbitrary code; if you trust their source, pass "
                   f"{PICKLE_OPT_IN} (on the hf-mae command line: --allow_pickle).")


def load_safetensors_only(load: Callable, name_or_path: str | os.PathLike, *args, use_safetensors: bool | None = None,
                          what: str | None = None, parameter: str = "pretrained_model_name_or_path", **kwargs):
    """``load(name_or_path, *args, use_safetensors=..., **kwargs)`` (a ``from_pretrained``) under hf_mae's rules:
    a missing local folder fails at once, pickled weights are refused unless ``use_safetensors=False``.

    Example:
        >>> import tempfile, torch
        >>> from transformers import AutoModel, BertConfig, BertModel
        >>> folder = tempfile.mkdtemp()
        >>> model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
        >>> model.config.save_pretrained(folder); torch.save(model.state_dict(), f"{folder}/pytorch_model.bin")
        >>> load_safetensors_only(AutoModel.from_pretrained, folder)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        OSError: ... only pickled weights (pytorch_model.bin) found ... pass use_safetensors=False ...
        >>> type(load_safetensors_only(AutoModel.from_pretrained, folder, use_safetensors=False)).__name__
        'BertModel'
    """
    name = check_pretrained_source(name_or_path, parameter)
    what = what or getattr(load, "__qualname__", "from_pretrained")
    refuse = use_safetensors is None
    if refuse and pickled_weights(name):
        raise _pickle_refusal(what, name, pickled_weights(name))
    try:
        return load(name_or_path, *args, use_safetensors=True if refuse else use_safetensors, **kwargs)
    except OSError as err:
        if refuse and "safetensors" in str(err):
            raise _pickle_refusal(what, name, []) from err
        raise


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
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args,
                        use_safetensors: bool | None = None, **kwargs):
        """transformers' ``from_pretrained``, safetensors only unless ``use_safetensors=False`` is passed; a
        missing local folder fails at once (``load_safetensors_only``)."""
        if pretrained_model_name_or_path is None:
            # transformers' in-memory form, from_pretrained(None, config=..., state_dict=...): no file is read
            return super().from_pretrained(None, *model_args, use_safetensors=use_safetensors, **kwargs)
        return load_safetensors_only(super().from_pretrained, pretrained_model_name_or_path, *model_args,
                                     use_safetensors=use_safetensors, what=f"{cls.__name__}.from_pretrained", **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """transformers' ``save_pretrained``; remote-code checkpoints list every Auto class of the architecture."""
        if self.hub_auto_map and self.is_remote_code():
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self.hub_auto_map}
        return super().save_pretrained(save_directory, *args, **kwargs)

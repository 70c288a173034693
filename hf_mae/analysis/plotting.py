"""Pictures for papers and model cards: reconstructions with the masked blocks shaded (spectra as curves,
one band of a hyperspectral cube as an image), loss curves, and a
cosine UMAP (or t-SNE) map of the latents coloured by a label.

matplotlib is an optional dependency (``pip install "hf-mae[plot]"``); it is imported only when a function
here is called. Figures are drawn on the Agg canvas directly, without pyplot, so nothing here touches a
display or the global pyplot state, and every function writes one PNG and returns its path.

Example:
    >>> import torch
    >>> from hf_mae import ChemoMAE
    >>> from hf_mae.analysis.plotting import plot_reconstructions
    >>> mae = ChemoMAE(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4).eval()
    >>> x = torch.randn(3, 64)
    >>> x_recon, z, visible = mae(x, generator=torch.Generator().manual_seed(0))
    >>> plot_reconstructions(x, x_recon, visible, "recon.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_reconstructions", "plot_image_reconstructions", "plot_loss_curve", "plot_embedding", "embed_2d", "load_log_history",
           "masked_spans"]


def _figure(width: float, height: float):
    """A matplotlib Figure on an Agg canvas, or an ImportError that says how to install matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("hf_mae.analysis.plotting needs matplotlib: pip install \"hf-mae[plot]\" "
                          "(or pip install matplotlib).") from err
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike, dpi: int) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"`path` must end in .png, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _numpy(values) -> np.ndarray:
    """A tensor (any dtype, any device) or array-like -> NumPy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
        values = values.float() if values.is_floating_point() else values
        return values.numpy()
    return np.asarray(values)


def _as_rows(values, name: str, *, dtype=np.float64) -> np.ndarray:
    """A tensor or array-like of shape (L,) or (N, L) -> NumPy (N, L)."""
    array = _numpy(values)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"`{name}` must have shape (L,) or (N, L) with N, L > 0, got {array.shape}.")
    if dtype is bool:
        if array.dtype != bool:
            raise ValueError(f"`{name}` must be boolean (True = visible), got dtype {array.dtype}.")
        return array
    array = array.astype(dtype)
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return array


def masked_spans(visible: np.ndarray) -> list[tuple[int, int]]:
    """Runs of hidden points in one (L,) visible mask, as half-open index ranges ``[(start, stop), ...]``.

    >>> masked_spans(np.array([True, False, False, True, False]))
    [(1, 3), (4, 5)]
    """
    hidden = np.concatenate([[False], ~np.asarray(visible, dtype=bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(hidden))
    return [(int(start), int(stop)) for start, stop in zip(edges[0::2], edges[1::2])]


def plot_reconstructions(inputs, reconstructions, visible_mask, path: str | os.PathLike, wavelengths=None, *,
                         n_samples: int = 4, titles: Sequence[str] | None = None, wavelength_unit: str = "nm",
                         dpi: int = 120) -> Path:
    """Draw inputs against reconstructions, one panel per spectrum, with the masked blocks shaded.

    Args:
        inputs, reconstructions: (N, L) or (L,) spectra (torch tensors or arrays), e.g. ``x`` and ``x_recon``.
        visible_mask: (N, L) bool, True = visible to the encoder, as returned by ``ChemoMAE.forward``.
        path: the PNG to write (parent folders are created).
        wavelengths: optional (L,) x axis (e.g. the processor's ``wavelengths``); point index if None.
        n_samples: at most this many spectra (the first ones) are drawn.
        titles: optional panel titles, one per drawn spectrum.

    Returns:
        The path written.

    Example:
        >>> import numpy as np
        >>> x = np.sin(np.linspace(0, 6, 64))[None]
        >>> visible = np.ones((1, 64), bool); visible[:, 16:32] = False
        >>> plot_reconstructions(x, x * 0.9, visible, "recon.png", np.linspace(1100, 2498, 64))  # doctest: +SKIP
    """
    x = _as_rows(inputs, "inputs")
    x_recon = _as_rows(reconstructions, "reconstructions")
    visible = _as_rows(visible_mask, "visible_mask", dtype=bool)
    if x_recon.shape != x.shape or visible.shape != x.shape:
        raise ValueError(f"`inputs` {x.shape}, `reconstructions` {x_recon.shape} and `visible_mask` {visible.shape} "
                         "must have the same shape.")
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"`n_samples` must be a positive int, got {n_samples!r}.")
    if wavelengths is None:
        axis, xlabel = np.arange(x.shape[1]), "point"
    else:
        axis = _as_rows(wavelengths, "wavelengths")[0]
        if axis.shape[0] != x.shape[1]:
            raise ValueError(f"`wavelengths` must have {x.shape[1]} values (one per point), got {axis.shape[0]}.")
        xlabel = f"wavelength ({wavelength_unit})" if wavelength_unit else "wavelength"
    count = min(n_samples, x.shape[0])
    if titles is not None and len(titles) < count:
        raise ValueError(f"`titles` must hold at least {count} entries (one per drawn spectrum), got {len(titles)}.")
    # Half a grid step either side, so a one-point block still shows as a band.
    half_step = np.abs(np.diff(axis)).min() / 2 if axis.shape[0] > 1 else 0.5

    figure = _figure(7.0, 2.2 * count)
    axes = figure.subplots(count, 1, sharex=True, squeeze=False)[:, 0]
    for i, ax in enumerate(axes):
        for j, (start, stop) in enumerate(masked_spans(visible[i])):
            lo, hi = sorted((axis[start], axis[stop - 1]))
            ax.axvspan(lo - half_step, hi + half_step, color="0.85", lw=0, label="masked" if j == 0 else None)
        ax.plot(axis, x[i], color="black", lw=1.2, label="input")
        ax.plot(axis, x_recon[i], color="tab:red", lw=1.0, ls="--", label="reconstruction")
        ax.set_title(titles[i] if titles is not None else f"sample {i}", fontsize=9)
        ax.set_ylabel("value")
    axes[0].legend(loc="best", fontsize=8, frameon=False)
    axes[-1].set_xlabel(xlabel)
    if wavelengths is not None and axis[0] > axis[-1]:  # wavenumber axes are drawn high to low, as measured
        axes[-1].invert_xaxis()
    figure.tight_layout()
    return _save(figure, path, dpi)


def plot_image_reconstructions(inputs, reconstructions, visible_mask, path: str | os.PathLike, *,
                               n_samples: int = 4, titles: Sequence[str] | None = None, dpi: int = 120) -> Path:
    """Draw images (e.g. one band of each hyperspectral cube) against their reconstructions, one row per image:
    the input, the input with the hidden patches greyed out (what the encoder saw), the reconstruction.

    Args:
        inputs, reconstructions: (N, H, W) or (H, W) images (torch tensors or arrays).
        visible_mask: (N, H, W) bool, True = visible to the encoder (a token's patch, spread over its pixels).
        path: the PNG to write. n_samples: at most this many images (the first ones) are drawn.
        titles: optional row titles, one per drawn image.

    Example:
        >>> import numpy as np
        >>> band = np.random.rand(1, 32, 32); visible = np.ones((1, 32, 32), bool); visible[:, :8, 8:16] = False
        >>> plot_image_reconstructions(band, band * 0.9, visible, "bands.png")  # doctest: +SKIP
    """
    arrays = {"inputs": _numpy(inputs), "reconstructions": _numpy(reconstructions),
              "visible_mask": _numpy(visible_mask)}
    for name, array in arrays.items():
        if array.ndim not in (2, 3):
            raise ValueError(f"`{name}` must have shape (H, W) or (N, H, W), got {array.shape}.")
        arrays[name] = array if array.ndim == 3 else array[None]
    shapes = [array.shape for array in arrays.values()]
    if len(set(shapes)) != 1:
        raise ValueError(f"`inputs` {shapes[0]}, `reconstructions` {shapes[1]} and `visible_mask` {shapes[2]} "
                         "must have the same shape.")
    count, height, width = shapes[0]
    # the same checks as for spectra (finite values, a bool mask), on the images flattened to rows
    x, x_recon, visible = (_as_rows(array.reshape(count, -1), name, dtype=bool if name == "visible_mask" else np.float64)
                           .reshape(count, height, width) for name, array in arrays.items())
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"`n_samples` must be a positive int, got {n_samples!r}.")
    count = min(n_samples, count)
    if titles is not None and len(titles) < count:
        raise ValueError(f"`titles` must hold at least {count} entries (one per drawn image), got {len(titles)}.")

    figure = _figure(7.5, 2.6 * count)
    axes = figure.subplots(count, 3, squeeze=False)
    hidden_grey = np.array([0.85, 0.85, 0.85, 1.0])
    for i, row in enumerate(axes):
        low, high = min(x[i].min(), x_recon[i].min()), max(x[i].max(), x_recon[i].max())  # one scale per row
        overlay = np.zeros((height, width, 4))
        overlay[~visible[i]] = hidden_grey
        for ax, image, column in zip(row, (x[i], x[i], x_recon[i]),
                                     ("input", "visible (hidden patches grey)", "reconstruction")):
            shown = ax.imshow(image, cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(column if i == 0 else "", fontsize=9)
        row[1].imshow(overlay, interpolation="nearest")
        row[0].set_ylabel(titles[i] if titles is not None else f"sample {i}", fontsize=9)
        figure.colorbar(shown, ax=list(row), fraction=0.03, pad=0.02)
    return _save(figure, path, dpi)


def load_log_history(source) -> list[dict]:
    """``Trainer``'s ``state.log_history`` from a list, a ``TrainerState``, a trainer_state.json, or a run folder.

    A run folder is searched for ``trainer_state.json`` at its top, then in its newest ``checkpoint-*``.
    """
    if hasattr(source, "log_history"):
        source = source.log_history
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            candidates = [path / "trainer_state.json"]
            checkpoints = sorted(path.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                                 if p.name.split("-")[-1].isdigit() else -1)
            candidates += [c / "trainer_state.json" for c in reversed(checkpoints)]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise ValueError(f"No trainer_state.json in {str(path)!r} or its checkpoint-* folders.")
            path = found[0]
        if not path.is_file():
            raise ValueError(f"`log_history` path {str(path)!r} does not exist.")
        source = json.loads(path.read_text())
    if isinstance(source, Mapping):
        if "log_history" not in source:
            raise ValueError("The mapping given as `log_history` has no 'log_history' key (is it trainer_state.json?).")
        source = source["log_history"]
    if not isinstance(source, Sequence) or not all(isinstance(row, Mapping) for row in source):
        raise ValueError("`log_history` must be a list of dicts (Trainer's state.log_history).")
    return [dict(row) for row in source]


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(row["step"], row[key]) for row in history if key in row and "step" in row]
    if not rows:
        return np.empty(0), np.empty(0)
    steps, values = np.asarray(rows, dtype=np.float64).T
    return steps, values


def plot_loss_curve(log_history, path: str | os.PathLike, *, log_scale: bool = False, dpi: int = 120) -> Path:
    """Training ``loss`` and ``eval_loss`` against the optimisation step.

    Args:
        log_history: ``trainer.state.log_history`` (a list of dicts), a ``TrainerState``, a path to
            trainer_state.json, or a run / output folder holding one.
        path: the PNG to write.
        log_scale: draw the loss on a log axis.

    Example:
        >>> history = [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 0.5}, {"step": 20, "eval_loss": 0.6}]
        >>> plot_loss_curve(history, "loss.png")  # doctest: +SKIP
    """
    history = load_log_history(log_history)
    train_steps, train_loss = _series(history, "loss")
    eval_steps, eval_loss = _series(history, "eval_loss")
    if train_steps.size == 0 and eval_steps.size == 0:
        raise ValueError("`log_history` holds no 'loss' or 'eval_loss' entries with a 'step' "
                         "(set logging_steps / eval_strategy so Trainer logs them).")
    figure = _figure(6.0, 3.5)
    ax = figure.subplots()
    if train_steps.size:
        ax.plot(train_steps, train_loss, color="tab:blue", lw=1.2, label="train loss")
    if eval_steps.size:
        ax.plot(eval_steps, eval_loss, color="tab:orange", lw=1.2, marker="o", ms=3, label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if log_scale:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    figure.tight_layout()
    return _save(figure, path, dpi)


def embed_2d(latents, *, method: str = "auto", random_state: int = 0) -> tuple[np.ndarray, str]:
    """Project latents (N, D) to 2D with the cosine metric: UMAP (umap-learn) or t-SNE (scikit-learn).

    ``method="auto"`` uses UMAP when umap-learn is installed and otherwise falls back to t-SNE with a
    warning that says so. Returns the (N, 2) coordinates and the method used (``"umap"`` or ``"tsne"``).
    """
    z = _as_rows(latents, "latents")
    if z.shape[0] < 4:
        raise ValueError(f"`latents` needs at least 4 samples for a 2D map, got {z.shape[0]}.")
    if (np.linalg.norm(z, axis=1) == 0).any():
        raise ValueError("`latents` has zero vectors: the cosine metric is undefined for them.")
    if method not in ("auto", "umap", "tsne"):
        raise ValueError(f"`method` must be 'auto', 'umap' or 'tsne', got {method!r}.")
    if method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if method == "umap":
                raise ImportError("method='umap' needs umap-learn: pip install \"hf-mae[umap]\".") from None
            warnings.warn("umap-learn is not installed: drawing a cosine t-SNE instead "
                          "(pip install \"hf-mae[umap]\" for UMAP).", stacklevel=2)
        else:
            reducer = umap.UMAP(n_neighbors=min(15, z.shape[0] - 1), metric="cosine", random_state=random_state)
            return np.asarray(reducer.fit_transform(z)), "umap"
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:
        raise ImportError("A 2D map of the latents needs umap-learn or scikit-learn: "
                          "pip install \"hf-mae[umap]\" or pip install scikit-learn.") from err
    perplexity = float(min(30.0, (z.shape[0] - 1) / 3))
    tsne = TSNE(n_components=2, metric="cosine", init="random", perplexity=perplexity, random_state=random_state)
    return tsne.fit_transform(z), "tsne"


def plot_embedding(latents, labels, path: str | os.PathLike, *, method: str = "auto", label_name: str = "label",
                   title: str | None = None, random_state: int = 0, max_categories: int = 10,
                   dpi: int = 120) -> tuple[Path, str]:
    """A 2D cosine map (UMAP, or t-SNE when umap-learn is absent) of latents coloured by ``labels``.

    Labels with at most ``max_categories`` distinct values (or any non-numeric labels) get one colour each
    and a legend; other numeric labels (a property such as moisture) get a colour scale. ``labels=None``
    draws every point in one colour. Returns the path written and the method used.

    Example:
        >>> import numpy as np
        >>> z = np.random.randn(40, 8); y = np.repeat([0, 1], 20)
        >>> plot_embedding(z, y, "map.png", method="tsne")  # doctest: +SKIP
        (PosixPath('map.png'), 'tsne')
    """
    z = _as_rows(latents, "latents")
    if labels is not None:
        labels = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).ravel()
        if labels.shape[0] != z.shape[0]:
            raise ValueError(f"`labels` has {labels.shape[0]} values for {z.shape[0]} latents.")
    coords, used = embed_2d(z, method=method, random_state=random_state)
    figure = _figure(5.5, 4.5)
    ax = figure.subplots()
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=8, color="tab:blue")
    elif labels.dtype.kind not in "biuf" or len(np.unique(labels)) <= max_categories:
        from matplotlib import colormaps

        categories = np.unique(labels)
        palette = colormaps["tab10" if len(categories) <= 10 else "tab20"]
        for i, category in enumerate(categories):
            keep = labels == category
            ax.scatter(coords[keep, 0], coords[keep, 1], s=8, color=palette(i % palette.N), label=str(category))
        ax.legend(title=label_name, fontsize=7, markerscale=2, frameon=False, loc="best")
    else:
        values = labels.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("`labels` contains NaN or infinite values.")
        points = ax.scatter(coords[:, 0], coords[:, 1], s=8, c=values, cmap="viridis")
        figure.colorbar(points, ax=ax, label=label_name)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{used.upper() if used == 'umap' else 't-SNE'} 1 (cosine)")
    ax.set_ylabel(f"{used.upper() if used == 'umap' else 't-SNE'} 2 (cosine)")
    ax.set_title(title or f"latents coloured by {label_name}", fontsize=10)
    figure.tight_layout()
    return _save(figure, path, dpi), used

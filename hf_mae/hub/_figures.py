"""Stand-in for ``hf_mae.plotting`` (written on another branch) with the same two calls, used by the model
cards only while that module is absent. Delete this file once ``hf_mae.plotting`` is on main."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _rows(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy() if values.is_floating_point() else values.detach().cpu().numpy()
    array = np.asarray(values)
    return array[None] if array.ndim == 1 else array


def plot_reconstructions(inputs, reconstructions, visible_mask, path: str | os.PathLike, wavelengths=None, *,
                         n_samples: int = 4, dpi: int = 120) -> Path:
    """Inputs (black) against reconstructions (red, dashed), hidden points shaded; one panel per spectrum."""
    x, x_recon, visible = _rows(inputs), _rows(reconstructions), _rows(visible_mask).astype(bool)
    axis = np.arange(x.shape[1]) if wavelengths is None else np.asarray(wavelengths, dtype=float)
    count = min(n_samples, x.shape[0])
    figure = _figure(7.0, 2.2 * count)
    for i, ax in enumerate(figure.subplots(count, 1, sharex=True, squeeze=False)[:, 0]):
        ax.fill_between(axis, x[i].min(), x[i].max(), where=~visible[i], color="0.85", lw=0, label="masked")
        ax.plot(axis, x[i], color="black", lw=1.2, label="input")
        ax.plot(axis, x_recon[i], color="tab:red", lw=1.0, ls="--", label="reconstruction")
        ax.set_title(f"sample {i}", fontsize=9)
        if i == 0:
            ax.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    return Path(path)


def plot_loss_curve(log_history: list[dict], path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Training ``loss`` and ``eval_loss`` against the step, from ``Trainer``'s ``state.log_history``."""
    figure = _figure(6.0, 3.5)
    ax = figure.subplots()
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
        if points:
            ax.plot(*zip(*points), marker="o" if key == "eval_loss" else None, ms=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    return Path(path)

"""Pictures a person would rather look at than read: training curves."""
from __future__ import annotations

import os

import numpy as np


def plot_training_curves(history: np.ndarray, out_dir: str) -> str | None:
    """history rows: (epoch, train loss, dev loss, dev WER, dev CER) -> out_dir/training_curves.png"""
    if not out_dir or len(history) == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = history[:, 0]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history[:, 1], "o-", label="train")
    if np.isfinite(history[:, 2]).any():
        ax_loss.plot(epochs, history[:, 2], "o-", label="dev")
    ax_loss.set(xlabel="epoch", ylabel="CTC loss", title="Loss")
    ax_loss.legend()
    if np.isfinite(history[:, 3]).any():
        ax_err.plot(epochs, 100 * history[:, 3], "o-", label="WER")
        ax_err.plot(epochs, 100 * history[:, 4], "o-", label="CER")
        ax_err.legend()
    ax_err.set(xlabel="epoch", ylabel="%", title="Dev greedy error rates")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out_dir, "training_curves.png")
    fig.savefig(f"{path}.tmp.png", dpi=100)
    plt.close(fig)
    os.replace(f"{path}.tmp.png", path)
    return path


def plot_augmented_sample(original: np.ndarray, augmented: np.ndarray, path: str, title: str = "",
                          frame_ms: float = 10.0) -> str:
    """Two log spectrograms [T, F], before and after augmentation (what the model is fed) -> ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low = min(np.percentile(original, 1), np.percentile(augmented, 1))  # one colour scale for both
    high = max(original.max(), augmented.max())
    longest = max(len(original), len(augmented)) * frame_ms / 1000
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 2.5 * longest), 6), sharex=True)
    for ax, spec, name in zip(axes, (original, augmented), ("original", "augmented (the model's input)")):
        image = ax.imshow(spec.T, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma",
                          extent=(0, len(spec) * frame_ms / 1000, 0, spec.shape[1]))
        ax.set(ylabel="frequency bin", title=name)
    axes[-1].set(xlabel="seconds", xlim=(0, longest))  # tempo and speed change the length
    fig.colorbar(image, ax=axes, label="log power")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

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

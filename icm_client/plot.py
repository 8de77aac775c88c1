"""A PNG of a run: U over the annealing steps (accepted and rejected proposals marked) and
the label balance. Needs matplotlib (``pip install 'icm-client[plot]'``), imported on use."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .runs.atomic import atomic_bytes

INSTALL_HINT = "pip install 'icm-client[plot]'"


def have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def plot_run(
    path: str | os.PathLike[str],
    trajectory: Sequence[Mapping[str, Any]],
    label_counts: Mapping[str, int],
    title: str = "",
) -> None:
    """Write the PNG to ``path``; ``ConfigError`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: files only
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"plots need matplotlib: {INSTALL_HINT}") from None

    fig, (ax_u, ax_bar) = plt.subplots(
        1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]}
    )
    try:
        steps = [int(s["n"]) for s in trajectory]
        ax_u.plot(steps, [float(s["energy"]) for s in trajectory], color="black", lw=1, label="U")
        for accepted, colour, marker, name in (
            (True, "tab:green", "o", "accepted"),
            (False, "tab:red", "x", "rejected"),
        ):
            pts = [
                (int(s["n"]), float(s["candidate_energy"]))
                for s in trajectory
                if s.get("changed")
                and bool(s.get("accepted")) == accepted
                and s.get("candidate_energy") is not None
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax_u.scatter(xs, ys, s=12, c=colour, marker=marker, label=name)
        ax_u.set_xlabel("step")
        ax_u.set_ylabel("U (candidate for proposals)")
        ax_u.set_title("annealing trajectory")
        if trajectory:
            ax_u.legend(loc="lower right", fontsize=8)
        labels = list(label_counts)
        ax_bar.bar(labels, [label_counts[k] for k in labels], color="tab:blue")
        ax_bar.set_title("label balance")
        ax_bar.set_ylabel("examples")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        with atomic_bytes(Path(path)) as fh:  # never through a link planted at path
            fig.savefig(fh, dpi=100, format="png")
    finally:
        plt.close(fig)

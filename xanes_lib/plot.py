"""Figures of the notebooks (matplotlib); the interactive explorer is :mod:`xanes_lib.explorer`."""

from __future__ import annotations

import numpy as np

__all__ = [
    "show_map", "show_task_graph",
]


def show_map(ax, image, *, title: str, label: str, cmap: str = "viridis", mask=None, **kwargs):
    """Image with a colour bar; pixels outside ``mask`` are blank.

    Without ``vmin``/``vmax`` the colour range spans the 1st to 99th percentile, so that a
    few outliers do not wash out the map.
    """
    data = np.where(mask, image, np.nan) if mask is not None else image
    finite = np.asarray(data, dtype=np.float64)[np.isfinite(data)]
    if finite.size and "vmin" not in kwargs and "vmax" not in kwargs:
        kwargs["vmin"], kwargs["vmax"] = np.percentile(finite, [1, 99])
    im = ax.imshow(data, cmap=cmap, **kwargs)
    ax.set_title(title)
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    ax.figure.colorbar(im, ax=ax, label=label)
    return im


def show_task_graph(ax, tasks, *, title: str = "task graph"):
    """Draw the Dask task graph behind ``tasks`` (delayed objects), one layer per depth.

    Every task is a dot coloured by its function and placed at the depth of its longest
    chain of dependencies; lines join each task to what it needs. A drawing of the real
    graph without graphviz (fine for graphs of a few hundred tasks).
    """
    import dask
    from dask.core import get_dependencies
    from dask.utils import key_split

    graph = dict(dask.delayed(list)(list(tasks)).__dask_graph__())
    deps = {k: get_dependencies(graph, k) for k in graph}
    depth: dict = {}

    def level(k):
        if k not in depth:
            depth[k] = 1 + max((level(d) for d in deps[k]), default=-1)
        return depth[k]

    for k in graph:
        level(k)
    layers: dict = {}
    for k in sorted(graph, key=str):
        layers.setdefault(depth[k], []).append(k)
    pos = {k: ((i + 1) / (len(ks) + 1), -d) for d, ks in layers.items() for i, k in enumerate(ks)}
    for k, ds in deps.items():
        for d in ds:
            ax.plot(*zip(pos[d], pos[k], strict=True), color="0.8", lw=0.6, zorder=1)
    names = sorted({key_split(k) for k in graph})
    for j, name in enumerate(names):
        pts = np.array([pos[k] for k in graph if key_split(k) == name])
        ax.scatter(pts[:, 0], pts[:, 1], s=25, color=f"C{j % 10}", label=f"{name} ({len(pts)})", zorder=2)
    ax.set(title=f"{title}: {len(graph)} tasks", xticks=[], ylabel="depth (dependencies)")
    ax.set_yticks(sorted(-d for d in layers))
    ax.set_yticklabels([str(d) for d in sorted(layers, reverse=True)])
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="function (tasks)")

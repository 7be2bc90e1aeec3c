"""Where the chunked graphs run: Dask's local schedulers or a ``dask.distributed`` cluster.

:func:`dask_scheduler` is a context manager; every graph computed inside it (by
:func:`xanes_lib.chunked.map_stack` and the rest) runs there. The default is Dask's threaded
scheduler on this machine (no set-up). ``"local-cluster"`` starts a ``LocalCluster`` with a
memory limit per worker (Dask's workers spill, pause and restart to stay under it) and
closes it at the end; ``dask_address`` connects to a running cluster. The same graph runs
on each.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

import dask

from ..resources import available_cores

__all__ = ["SCHEDULERS", "SchedulerInfo", "dask_scheduler", "WorkerMemory"]

#: Schedulers of :func:`dask_scheduler` (a cluster address is given with ``dask_address``).
SCHEDULERS = ("threads", "processes", "synchronous", "local-cluster")


@dataclass(frozen=True)
class SchedulerInfo:
    """The scheduler in use: its kind, workers, memory limit per worker, dashboard and client."""

    kind: str
    n_workers: int
    memory_limit_bytes: int | None = None
    dashboard_link: str | None = None
    client: object = None

    def describe(self) -> str:
        """One line for a log: kind, workers, memory limit and dashboard."""
        mem = ("" if self.memory_limit_bytes is None
               else f", {self.memory_limit_bytes / 2 ** 30:.2f} GiB per worker")
        link = f", dashboard {self.dashboard_link}" if self.dashboard_link else ""
        return f"{self.kind}: {self.n_workers} worker(s){mem}{link}"


@contextlib.contextmanager
def dask_scheduler(scheduler: str = "threads", *, dask_address: str | None = None,
                   n_workers: int | None = None, threads_per_worker: int = 1, memory_limit="auto",
                   dashboard: bool = False):
    """Run the Dask graphs computed inside the ``with`` block on the chosen scheduler.

    Parameters
    ----------
    scheduler : {"threads", "processes", "synchronous", "local-cluster"}
        Dask's local schedulers, or a ``distributed.LocalCluster`` started for the block
        (worker processes with ``memory_limit`` each). Ignored when ``dask_address`` is given.
    dask_address : str, optional
        Address of a running ``dask.distributed`` scheduler (e.g. ``"tcp://10.0.0.5:8786"``):
        the graphs go to that cluster.
    n_workers : int, optional
        Workers (threads for "threads"/"processes"); None: the CPUs of this machine.
    threads_per_worker : int
        Threads per worker process of a local cluster.
    memory_limit : str, int or "auto"
        Per worker of a local cluster (e.g. "1GiB"); "auto" shares the machine's memory.
    dashboard : bool
        Start the diagnostics dashboard of a local cluster (its link is in the info).

    Yields
    ------
    SchedulerInfo
    """
    if dask_address is None and scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS} (or give dask_address); got {scheduler!r}.")
    n = available_cores() if n_workers is None else int(n_workers)
    if n < 1:
        raise ValueError(f"n_workers must be >= 1; got {n_workers}.")
    if dask_address is None and scheduler != "local-cluster":
        with dask.config.set(scheduler=scheduler, num_workers=n):
            yield SchedulerInfo(scheduler, 1 if scheduler == "synchronous" else n)
        return
    from distributed import Client, LocalCluster

    cluster = None
    if dask_address is None:
        # silence_logs: the workers' pause/resume warnings near their memory limit are Dask's
        # normal way to stay under it (WorkerMemory reports the peaks); errors still show
        cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                               processes=True, dashboard_address=":0" if dashboard else None,
                               silence_logs=logging.ERROR)
    client = Client(cluster if cluster is not None else dask_address)
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        limits = {w.get("memory_limit") for w in workers.values()}
        limit = limits.pop() if len(limits) == 1 else None
        kind = "local-cluster" if cluster is not None else f"cluster at {dask_address}"
        link = client.dashboard_link if dashboard or cluster is None else None
        yield SchedulerInfo(kind, len(workers), limit or None, link, client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class WorkerMemory:
    """Peak resident memory of every worker of a ``dask.distributed`` client, sampled in a thread.

    Use as a context manager around a computation: ``peak`` maps each worker's address to
    the largest resident set size (bytes) seen every ``period_s`` seconds (a peak shorter
    than the period can be missed; Dask's own memory monitor checks at a similar rate).
    """

    def __init__(self, client, period_s: float = 0.25):
        self.client, self.period = client, float(period_s)
        self.peak: dict = {}
        self._stop = threading.Event()
        self._thread = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.client.run(_rss)
            except Exception:  # noqa: BLE001 - a worker restarting: skip this sample
                rss = {}
            for worker, value in rss.items():
                self.peak[worker] = max(self.peak.get(worker, 0), value)
            self._stop.wait(self.period)

    def __enter__(self) -> WorkerMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

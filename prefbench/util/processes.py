"""Independent pieces of a run (training jobs, the systems of the generate stage) in processes of their own, a
few at a time, each with its share of the machine's cores.

A model of the embedded model's size keeps a CPU's threads only partly busy: most of a training or decoding step
is small operations that gain little from a second thread. On the project's 2-core machine two processes of one
thread each do 1.3-1.5x the work of one process of two threads (docs/performance.md, "Jobs at a time").

Each process is spawned (never forked: the driver may hold a model and torch's thread pools) with its thread
count in ``OMP_NUM_THREADS`` and progress bars off (``TQDM_DISABLE``); the driver shows one bar for them all.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Task:
    """One piece of work: ``fn(*args)`` in a worker process (``fn`` a module-level function, ``args`` picklable)."""

    name: str
    fn: Callable
    args: tuple


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set while worker processes are spawned (they copy it then), restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_in_processes(tasks: list[Task], workers: int, threads: int, *, desc: str, unit: str, total: int,
                     done: Callable[[], int]) -> list[tuple[Task, BaseException]]:
    """Run every task, ``workers`` processes at a time with ``threads`` threads each, in the order given (a freed
    process takes the next task); the driver's bar shows ``done()`` of ``total`` ``unit``, polled every two seconds.
    Returns the tasks that failed with their errors, after every task has ended."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(tasks))), mp_context=context)
    bar = tqdm(total=total, initial=done(), desc=desc, unit=unit, leave=False)
    try:
        # with the spawn context a process starts at a submit that finds none idle: all of them start here
        with _environment(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1"):
            futures: dict[Future, Task] = {pool.submit(t.fn, *t.args): t for t in tasks}
        failures, pending = [], set(futures)
        while pending:
            finished, pending = wait(pending, timeout=2, return_when=FIRST_COMPLETED)
            failures += [(futures[f], f.exception()) for f in finished if f.exception() is not None]
            bar.n = done()
            bar.refresh()
        return sorted(failures, key=lambda failure: tasks.index(failure[0]))
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)

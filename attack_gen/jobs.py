"""Work cut into pure, idempotent jobs, run in this process or on Ray.

A job is a frozen dataclass whose fields are its whole input (files are named by their
SHA-256, so a job does not depend on where they lie); its key is the SHA-256 of its kind
and those fields, and its output is one file named after that key, written atomically.
So a rerun skips every job whose output exists, a killed job leaves nothing
half-written, and results do not depend on which worker ran what or in what order
(seeds come from the job's fields, never from a worker).

:class:`Runner` runs a list of jobs:

* ``backend="local"`` (the default; what CI and the demo use): ``workers`` processes on
  this machine (default: its cores / ``num_cpus``), or this process when one is enough.
* ``backend="ray"``: on Ray actors (``ray.init()``: a local Ray on this machine, or the
  cluster at ``address`` / ``$RAY_ADDRESS``). Each actor asks for ``num_cpus`` and
  ``num_gpus`` (fractional allowed). The job outputs go to a folder every node sees (a
  shared file system on a cluster).

Either way a worker keeps a cache across jobs (a model is loaded once per worker) and
runs each job with ``num_cpus`` torch threads, so a job does the same arithmetic, bit for
bit, whichever backend or worker runs it (a CPU's floating-point sums depend on the
number of threads).

Both retry a failing job ``retries`` times; one that keeps failing is reported by job at
the end (a one-line :class:`DataError`), after the rest have run and been saved, so a
rerun does only what is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import Executor
from concurrent.futures import Future
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Callable
from typing import ClassVar
from typing import Iterator
from typing import Sequence

from stimuli.errors import DataError

__all__ = ["BACKENDS", "Job", "Runner", "RayExecutor", "JobsFailed"]

BACKENDS = ("local", "ray")


class JobsFailed(DataError):
    """Some jobs kept failing; the others finished and are saved."""


def _key_fields(job: Any) -> dict[str, Any]:
    return {f.name: getattr(job, f.name) for f in dataclasses.fields(job) if f.metadata.get("key", True)}


@dataclass(frozen=True)
class Job:
    """Base of every job: subclasses add fields (the input) and :meth:`run`.

    A field with ``metadata={"key": False}`` (a file's path beside its hash) is passed to
    the job but is not part of its key.
    """

    kind: ClassVar[str] = "job"
    version: ClassVar[int] = 1
    """Part of the key: bump it when the output changes for the same fields."""

    @property
    def key(self) -> str:
        spec = {"kind": self.kind, "version": self.version, "fields": _key_fields(self)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @property
    def filename(self) -> str:
        """The output's name: the kind and the key."""
        return f"{self.kind}-{self.key[:32]}.npz"

    def describe(self) -> str:
        return f"{self.kind} {self.key[:12]}"

    def run(self, out: Path, cache: dict[str, Any]) -> None:  # pragma: no cover - abstract
        """Compute the output and write it to ``out`` atomically; ``cache`` lives as long as the worker."""
        raise NotImplementedError


@dataclass
class Runner:
    """How jobs run: the backend and its resources, retries, progress (see the module docstring)."""

    backend: str = "local"
    address: str | None = None
    """Ray: the cluster to join (default ``$RAY_ADDRESS``; none: start a local Ray)."""
    num_cpus: float = 1.0
    """Ray: CPUs per actor (and torch threads in it)."""
    num_gpus: float = 0.0
    """Ray: GPUs per actor (0.5: two actors share a GPU)."""
    workers: int | None = None
    """How many jobs at once (default: as many as this machine's cores, or the Ray cluster's CPUs and GPUs, allow)."""
    retries: int = 2
    progress: bool = True
    _pool: Any = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise DataError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.num_gpus < 0 or self.num_cpus <= 0:
            raise DataError(f"need num_cpus > 0 and num_gpus >= 0, got {self.num_cpus} and {self.num_gpus}")
        if self.backend == "local" and (self.address or self.num_gpus):
            raise DataError("--ray-address and --gpus-per-job need --backend ray")
        if self.workers is not None and self.workers < 1:
            raise DataError(f"--workers must be >= 1, got {self.workers}")

    @property
    def threads(self) -> int:
        """Torch threads per job."""
        return max(1, int(self.num_cpus))

    def run(
        self,
        jobs: Sequence[tuple[Job, Path]],
        *,
        desc: str = "jobs",
        on_done: Callable[[Job, Path, bool], None] | None = None,
    ) -> dict[str, int]:
        """Run every ``(job, output path)`` of ``jobs`` whose output is missing.

        ``on_done(job, output, reused)`` is called in this process for every job, reused
        or run, as it becomes available. Returns ``{"jobs", "reused", "ran"}``; raises
        :class:`JobsFailed` naming the jobs that kept failing (after all others ran).
        """
        unique = list({job.key: (job, Path(out)) for job, out in jobs}.values())
        todo = []
        for job, out in unique:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.is_file():
                if on_done is not None:
                    on_done(job, out, True)
            else:
                todo.append((job, out))
        counts = {"jobs": len(unique), "reused": len(unique) - len(todo), "ran": 0}
        if not todo:
            return counts
        from tqdm import tqdm

        failed: list[tuple[Job, str]] = []
        where = {job.key: out for job, out in unique}
        with tqdm(
            total=len(unique),
            initial=counts["reused"],
            desc=desc,
            unit="job",
            file=sys.stderr,
            disable=not self.progress,
        ) as bar:

            def finished(job: Job) -> None:
                counts["ran"] += 1
                bar.update(1)
                if on_done is not None:
                    on_done(job, where[job.key], False)

            if self.backend == "local":
                self._run_local(todo, finished, failed)
            else:
                self._run_ray(todo, finished, failed)
        if failed:
            shown = "; ".join(f"{job.describe()}: {why}" for job, why in failed[:3])
            more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
            raise JobsFailed(
                f"{len(failed)} of {len(unique)} {desc} jobs failed after {self.retries + 1} tries "
                f"(the others are saved; a rerun does only what is left): {shown}{more}"
            )
        return counts

    # ---- local ---------------------------------------------------------------------------
    def _run_local(
        self, todo: list[tuple[Job, Path]], finished: Callable[[Job], None], failed: list[tuple[Job, str]]
    ) -> None:
        workers = self.workers or max(1, int((os.cpu_count() or 1) // self.num_cpus))
        if workers == 1 or len(todo) == 1:
            with _torch_threads(self.threads):
                for job, out in todo:
                    for attempt in range(self.retries + 1):
                        try:
                            job.run(out, _CACHE)
                        except Exception as e:  # noqa: BLE001 - reported by job at the end; the others go on
                            if attempt == self.retries:
                                failed.append((job, _one_line(e)))
                            continue
                        finished(job)
                        break
            return
        pool = self._local_pool(workers)
        tries: dict[str, int] = {}
        pending = {pool.submit(_run_in_worker, job, str(out)): (job, out) for job, out in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job, out = pending.pop(fut)
                error = fut.exception()
                if error is None:
                    finished(job)
                    continue
                tries[job.key] = tries.get(job.key, 0) + 1
                if tries[job.key] <= self.retries and not isinstance(error, BrokenProcessPool):
                    pending[pool.submit(_run_in_worker, job, str(out))] = (job, out)
                else:
                    failed.append((job, _one_line(error)))

    def _local_pool(self, workers: int) -> ProcessPoolExecutor:
        """Worker processes kept for the runner's life (their caches too): forked from a server that has
        imported torch, so each starts in a moment and none inherits a running thread pool."""
        if self._pool is None or self._pool[0] != workers:
            self.close()
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["torch", "attack_gen.attack.runs"])
            pool = ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_init_worker, initargs=(self.threads, os.getpid())
            )
            self._pool = (workers, pool)
        return self._pool[1]

    def close(self) -> None:
        """Stop the local worker processes (they also stop when this process exits)."""
        if self._pool is not None:
            self._pool[1].shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # ---- ray -----------------------------------------------------------------------------
    def _run_ray(
        self, todo: list[tuple[Job, Path]], finished: Callable[[Job], None], failed: list[tuple[Job, str]]
    ) -> None:
        ray = connect_ray(self.address)
        n = self.workers or _fit_actors(ray, self.num_cpus, self.num_gpus)
        n = max(1, min(n, len(todo)))
        actor_cls = ray.remote(_JobActor).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=-1)
        actors = [actor_cls.remote(self.threads) for _ in range(n)]
        queue = deque(todo)
        tries: dict[str, int] = {}
        pending: dict[Any, tuple[Job, Path, Any]] = {}
        idle = list(actors)
        try:
            while queue or pending:
                while queue and idle:
                    (job, out), actor = queue.popleft(), idle.pop()
                    pending[actor.run.remote(job, str(out))] = (job, out, actor)
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job, out, actor = pending.pop(ref)
                    idle.append(actor)  # a crashed actor restarts (max_restarts=-1) and takes the next job
                    try:
                        ray.get(ref)
                    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as e:
                        tries[job.key] = tries.get(job.key, 0) + 1
                        if tries[job.key] <= self.retries:
                            queue.append((job, out))
                        else:
                            failed.append((job, _one_line(getattr(e, "cause", None) or e)))
                        continue
                    finished(job)
        finally:
            for actor in actors:
                ray.kill(actor)


_CACHE: dict[str, Any] = {}
"""The cache of the jobs run in this process (a local worker's, an actor's, or the caller's own)."""


_CALLER: int | None = None
"""In a local worker: the pid of the process whose runner started it."""


def _init_worker(threads: int, caller: int) -> None:  # pragma: no cover - runs in worker processes
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the caller, which stops the workers
    torch.set_num_threads(threads)
    global _CALLER
    _CALLER = caller


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a killed one not yet reaped by its parent does not)."""
    if os.path.isdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _run_in_worker(job: Job, out: str) -> None:  # pragma: no cover - runs in worker processes
    # Jobs queued for a caller that was killed (kill -9 gives it no chance to stop its pool) are not
    # run: the worker leaves instead of attacking for no one; a rerun does what is left.
    if _CALLER is not None and not _alive(_CALLER):
        os._exit(0)
    job.run(Path(out), _CACHE)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _JobActor:
    """A Ray actor running jobs one at a time, with a cache that outlives them (a loaded model)."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

    def run(self, job: Job, out: str) -> None:
        job.run(Path(out), _CACHE)


def connect_ray(address: str | None = None) -> Any:
    """``ray`` once connected: to ``address`` or ``$RAY_ADDRESS``, else a Ray started on this machine."""
    try:
        import ray
    except ImportError:
        raise DataError("--backend ray needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except ConnectionError as e:
            raise DataError(f"cannot reach the Ray cluster at {address}: {_one_line(e)}") from None
    return ray


def _fit_actors(ray: Any, num_cpus: float, num_gpus: float) -> int:
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // num_cpus)
    if num_gpus > 0:
        n = min(n, int(res.get("GPU", 0) // num_gpus))
        if n < 1:
            raise DataError(f"the Ray cluster has {res.get('GPU', 0):g} GPUs; --gpus-per-job {num_gpus:g} needs more")
    return max(n, 1)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]


class RayExecutor(Executor):
    """A :class:`concurrent.futures.Executor` whose calls run as Ray tasks (``num_cpus`` each, retried)."""

    def __init__(self, address: str | None = None, num_cpus: float = 1.0, retries: int = 2) -> None:
        self._ray = connect_ray(address)
        self._options = {"num_cpus": num_cpus, "max_retries": retries, "retry_exceptions": True}
        self._remote: dict[Callable[..., Any], Any] = {}
        self.workers = max(1, int(self._ray.cluster_resources().get("CPU", 1) // num_cpus))
        """How many calls the cluster runs at once."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(fn).options(**self._options)
        return self._remote[fn].remote(*args, **kwargs).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # the Ray connection stays for the rest of the process

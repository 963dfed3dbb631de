"""The job runner's failure path: a job that fails now and then is retried, one that keeps failing
is reported by job while the others finish, and a rerun does only what is left. The same jobs go
through one local worker, a local pool and a local Ray."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import ClassVar

import pytest

from attack_gen.jobs import Job
from attack_gen.jobs import JobsFailed
from attack_gen.jobs import Runner


@dataclass(frozen=True)
class Flaky(Job):
    """Fails its first ``fails`` tries (-1: every try); counts its tries as files in ``log``."""

    kind: ClassVar[str] = "flaky"
    name: str
    fails: int
    log: str = field(default="", metadata={"key": False})

    def run(self, out: Path, cache: dict[str, Any]) -> None:
        n = len(list(Path(self.log).glob(f"{self.name}-*")))
        (Path(self.log) / f"{self.name}-{n + 1}").touch()
        if self.fails < 0 or n < self.fails:
            raise ValueError(f"{self.name} broke on try {n + 1}")
        tmp = out.with_suffix(".tmp")
        tmp.write_text(self.name)
        os.replace(tmp, out)


def _tries(log: Path, name: str) -> int:
    return len(list(log.glob(f"{name}-*")))


@pytest.fixture(params=["one local worker", "local pool", "ray"])
def runner(request: pytest.FixtureRequest):
    if request.param == "ray":
        ray = pytest.importorskip("ray")
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import tests/
        r = Runner("ray", workers=2, retries=2, progress=False)
    else:
        r = Runner("local", workers=1 if request.param == "one local worker" else 2, retries=2, progress=False)
    yield r
    r.close()
    if request.param == "ray" and ray.is_initialized():
        ray.shutdown()


def test_a_failing_job_is_retried_reported_by_name_and_the_others_are_saved(runner: Runner, tmp_path: Path) -> None:
    log, out = tmp_path / "log", tmp_path / "out"
    log.mkdir()
    spec = {"a": 0, "b": 0, "c": 2, "d": -1}  # c fails twice, then works on its third and last try
    jobs = [(Flaky(name, fails, str(log)), out / f"{name}.txt") for name, fails in spec.items()]
    with pytest.raises(JobsFailed) as e:
        runner.run(jobs, desc="flaky")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("1 of 4 flaky jobs failed after 3 tries")
    assert "d broke on try 3" in message
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "c.txt"]  # nothing half-written
    assert [_tries(log, n) for n in "abcd"] == [1, 1, 3, 3]

    with pytest.raises(JobsFailed):  # the rerun runs only d (three more tries), reusing a, b, c
        runner.run(jobs, desc="flaky")
    assert [_tries(log, n) for n in "abcd"] == [1, 1, 3, 6]

    assert runner.run(jobs[:3], desc="flaky") == {"jobs": 3, "reused": 3, "ran": 0}

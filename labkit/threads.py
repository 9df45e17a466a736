"""CPU threads that survive a shared machine: how many to use, and how they wait.

PyTorch's CPU kernels run on an OpenMP thread pool, by default one thread per core, and OpenMP threads that
finish early *spin* (busy-wait) for the others. When another process holds one of the cores — a second
notebook, a test run, a helper job, or simply a CPU quota smaller than the cores the kernel reports (Binder and
Colab give a cgroup quota; ``os.cpu_count()`` still shows every core of the host) — a spinning thread burns the
time slice its partner needs, and a forward pass can take 10–25× longer than on an idle machine
(``benchmarks/threads.md`` measures it). Two settings make the course immune:

* **threads follow the CPU budget**: :func:`cpu_budget` is the smaller of the CPUs this process may run on
  (affinity) and the cgroup CPU quota, and torch uses no more threads than that;
* **waiting is passive**: ``OMP_WAIT_POLICY=PASSIVE`` (every OpenMP runtime understands it) with a short spin
  before sleeping (``GOMP_SPINCOUNT``, GNU OpenMP's spin count, which takes precedence over the policy's zero):
  a thread waiting for a busy core sleeps after a few microseconds instead of spinning, while on an idle machine
  the short spin keeps the small-batch speed of the default.

OpenMP reads these variables once, when torch's OpenMP runtime loads, so they must be in the environment before
``import torch``. ``import labkit`` sets them (:func:`prepare`, unless torch was imported first or the user set
them); labkit also sets them for every process it starts (JupyterLab from ``python -m labkit lab``, the test and
notebook-benchmark kernels, ``.ci/run``, Binder's ``start``), and :func:`check` (called by ``labkit.setup()``)
warns when torch was loaded before labkit with settings that will crawl on a busy machine.

This module does not import torch, so it can run before it.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["WAIT_POLICY", "SPIN_COUNT", "cgroup_quota", "cpu_budget", "thread_env", "prepare", "check", "STATE"]

#: The OpenMP wait policy labkit asks for.
WAIT_POLICY = "PASSIVE"
#: GNU OpenMP's spin count before a waiting thread sleeps (about 30 µs): measured in benchmarks/threads.md.
SPIN_COUNT = "3000"

#: What :func:`prepare` found and did when labkit was imported.
STATE: dict = {"torch_preloaded": None, "set": {}, "budget": None}


def cgroup_quota(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when there is none.

    cgroup v2: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) in the process's cgroup and its
    parents (the smallest applies); cgroup v1: ``cpu.cfs_quota_us / cpu.cfs_period_us`` (−1 = no quota).
    """
    for name, value in (("root", root), ("proc_cgroup", proc_cgroup)):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a path (str or pathlib.Path), got {type(value).__name__}")
    root, proc_cgroup = Path(root), Path(proc_cgroup)
    quotas = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = Path(path.lstrip("/"))
        if controllers == "":  # cgroup v2: walk from the process's group up to the root
            for folder in [root / rel, *(root / p for p in rel.parents)]:
                try:
                    quota, period = (folder / "cpu.max").read_text().split()[:2]
                except (OSError, ValueError):
                    continue
                if quota != "max" and float(period) > 0:
                    quotas.append(float(quota) / float(period))
        elif "cpu" in controllers.split(","):  # cgroup v1
            for base in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                for folder in (base / rel, base):
                    try:
                        quota = float((folder / "cpu.cfs_quota_us").read_text())
                        period = float((folder / "cpu.cfs_period_us").read_text())
                    except (OSError, ValueError):
                        continue
                    if quota > 0 and period > 0:
                        quotas.append(quota / period)
    return min(quotas) if quotas else None


def cpu_budget(quota: float | None = None, affinity: int | None = None) -> int:
    """How many CPUs this process can really use: min(CPUs in its affinity mask, floor of its cgroup quota), ≥ 1.

    ``quota`` (in CPUs) and ``affinity`` (a count) default to what the operating system reports; pass them to
    compute the budget of another setting.
    """
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if quota is None:
        quota = cgroup_quota()
    for name, value in (("affinity", affinity), ("quota", quota)):
        if value is not None and (not isinstance(value, (int, float)) or math.isnan(value) or value <= 0):
            raise ValueError(f"{name} must be a positive number of CPUs, got {value!r}")
    budget = int(affinity)
    if quota is not None:
        budget = min(budget, int(math.floor(quota)))
    return max(1, budget)


def thread_env(env: dict | None = None) -> dict:
    """The variables labkit adds to an environment for a process that will run torch (missing ones only).

    ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` always; ``OMP_NUM_THREADS`` = :func:`cpu_budget` when the budget
    is smaller than the cores the machine reports (a quota or an affinity mask), where torch's default of one
    thread per core would oversubscribe. Values the caller already set are kept.
    """
    if env is not None and not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of environment variables (like os.environ), got {type(env).__name__}")
    env = dict(os.environ if env is None else env)
    add = {"OMP_WAIT_POLICY": WAIT_POLICY, "GOMP_SPINCOUNT": SPIN_COUNT}
    budget = cpu_budget()
    if budget < (os.cpu_count() or budget):
        add["OMP_NUM_THREADS"] = str(budget)
    return {k: v for k, v in add.items() if k not in env}


def prepare() -> None:
    """Set the thread variables in this process's environment before torch loads (called by ``import labkit``).

    Does nothing to a variable the user set; does nothing at all once torch is imported (OpenMP has read them
    already), but records it, so that :func:`check` can warn.
    """
    STATE["torch_preloaded"] = "torch" in sys.modules
    STATE["budget"] = cpu_budget()
    if STATE["torch_preloaded"]:
        return
    added = thread_env()
    os.environ.update(added)
    STATE["set"] = added


def check(warn: bool = True) -> list[str]:
    """After torch has loaded: warn about thread settings that will crawl; returns the warnings.

    Two cases (both only possible when torch was imported before labkit, or the user chose the settings):
    torch uses more threads than the CPU budget while nobody chose a number (``OMP_NUM_THREADS`` unset), or
    torch was imported without ``OMP_WAIT_POLICY=PASSIVE`` and uses more than one thread (OpenMP read its
    defaults already). The advice is to set the variables before Python starts, or to restart the kernel and
    import labkit first. labkit does not change the thread count of a running torch: with this course's torch
    build, any ``torch.set_num_threads`` call after start-up leaves MKL unable to solve batched linear systems
    (LAPACK DLASWP errors, then a hang; ``tests/test_threads.py`` checks that loading the model never does it).
    """
    if not isinstance(warn, bool):
        raise TypeError(f"warn must be True or False, got {warn!r}")
    import torch

    problems = []
    budget = cpu_budget()
    n = torch.get_num_threads()
    if n > budget and "OMP_NUM_THREADS" not in os.environ:
        problems.append(
            f"torch uses {n} threads but this process may use {budget} CPU(s) (affinity/quota), so its threads "
            f"will fight for the CPUs: start Python with OMP_NUM_THREADS={budget}, or restart the kernel and import "
            f"labkit before torch"
        )
    policy = os.environ.get("OMP_WAIT_POLICY", "").upper()
    if STATE["torch_preloaded"] and policy != WAIT_POLICY and n > 1:
        problems.append(
            f"torch was imported before labkit, so its {n} OpenMP threads spin while they wait; on a busy or "
            f"shared CPU a forward pass can run 10-25x slower. Restart the kernel and import labkit before torch, "
            f"or start Python with OMP_WAIT_POLICY=PASSIVE"
        )
    if warn:
        import warnings

        for p in problems:
            warnings.warn(p, RuntimeWarning, stacklevel=3)
    return problems

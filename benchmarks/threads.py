"""Benchmark: torch's CPU threads on an idle machine and with one busy core, for several OpenMP settings.

    python benchmarks/threads.py         # prints a table and writes benchmarks/threads.md and .json

Each setting runs in a fresh Python process (OpenMP reads its variables once, when torch loads), which times
SmolLM2-135M-Instruct's next-token logits for 8 short prompts (a notebook's typical call) and for 64 longer
prompts, first on the idle machine, then while a second process spins on one core (another notebook, a test
run, a CPU quota smaller than the cores). Reported: the median of 7 calls (3 for the larger batch) and the
slow-down factor under contention. labkit's setting (labkit/threads.py) is the one marked "labkit".
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from labkit import threads  # noqa: E402

SCRIPT = r"""
import statistics, subprocess, sys, time
import torch  # first: labkit must not fill in its own settings here, the parent chose them
import labkit
lm = labkit.load_lm(device="cpu")
small = [f"The number {i} is a very interesting number because" for i in range(8)]
large = [f"The number {i} is a very interesting number because it has many properties that we like to" for i in range(64)]
def measure(prompts, n):
    lm.next_token_logits(prompts)
    times = []
    for _ in range(n):
        t = time.perf_counter(); lm.next_token_logits(prompts); times.append(time.perf_counter() - t)
    return statistics.median(times)
out = [measure(small, 7), measure(large, 3)]
busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
try:
    time.sleep(0.5)
    out += [measure(small, 7), measure(large, 3)]
finally:
    busy.kill(); busy.wait()
print(*out, torch.get_num_threads())
"""

OMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "KMP_BLOCKTIME")
SETTINGS = [
    ("torch's default (active spinning)", {}),
    ("OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("PASSIVE, GOMP_SPINCOUNT=1000", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}),
    ("PASSIVE, GOMP_SPINCOUNT=3000 (labkit)", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}),
    ("PASSIVE, GOMP_SPINCOUNT=10000", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}),
    ("one thread (OMP_NUM_THREADS=1)", {"OMP_NUM_THREADS": "1"}),
]


def main() -> int:
    assert threads.WAIT_POLICY == "PASSIVE" and threads.SPIN_COUNT == "3000", "update the 'labkit' row"
    base = {k: v for k, v in os.environ.items() if k not in OMP}
    results = []
    for label, env in SETTINGS:
        run = subprocess.run([sys.executable, "-c", SCRIPT], env={**base, **env}, capture_output=True, text=True,
                             cwd=ROOT, timeout=900)
        if run.returncode != 0:
            raise SystemExit(f"{label}: {run.stderr[-2000:]}")
        small, large, small_busy, large_busy, n = run.stdout.split()
        r = dict(setting=label, env=env, threads=int(n), small_idle_s=float(small), large_idle_s=float(large),
                 small_busy_s=float(small_busy), large_busy_s=float(large_busy))
        results.append(r)
        print(r, flush=True)
    lines = ["| setting | torch threads | 8 prompts idle (s) | with a busy core (s) | slow-down | 64 prompts idle (s) "
             "| with a busy core (s) | slow-down |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['setting']} | {r['threads']} | {r['small_idle_s']:.3f} | {r['small_busy_s']:.3f} | "
                     f"{r['small_busy_s'] / r['small_idle_s']:.1f}× | {r['large_idle_s']:.2f} | {r['large_busy_s']:.2f} | "
                     f"{r['large_busy_s'] / r['large_idle_s']:.1f}× |")
    machine = f"{platform.machine()}, {os.cpu_count()} cores (CPU budget {threads.cpu_budget()}), Python {platform.python_version()}"
    text = ("# Threads benchmark: a forward pass on an idle machine and with one busy core\n\n"
            f"Measured by `python benchmarks/threads.py` on {machine}, each setting in a fresh process, SmolLM2-135M-"
            "Instruct next-token logits (median of 7 calls for 8 prompts, of 3 for 64). The busy core is a second "
            "process running `while True: pass`.\n\n" + "\n".join(lines) + "\n\n"
            "With the default, OpenMP threads spin while they wait for the thread whose core is taken, and the pass "
            "slows down many times; passive waiting lets them sleep. A short spin before sleeping (GOMP_SPINCOUNT) "
            "keeps most of the default's idle speed on small batches, which pure passive waiting loses. labkit uses "
            "PASSIVE with GOMP_SPINCOUNT=3000 (labkit/threads.py).\n")
    print(text)
    out = Path(__file__).with_suffix(".md")
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""benchmarks/gpu.py without a GPU: a clear message and exit status 1, nothing started; its table from stored results.

The script itself needs CUDA (it runs the unit tests and times the notebooks there), so no test here runs it for
real: the tests check what it does on a machine without CUDA, and the table it writes, from made-up results.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def _script():
    spec = importlib.util.spec_from_file_location("benchmarks_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_without_cuda_stops_with_a_clear_message(monkeypatch):
    gpu = _script()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu.subprocess, "run", lambda *a, **k: pytest.fail("started a process without CUDA"))
    monkeypatch.setattr(gpu, "measure", lambda *a, **k: pytest.fail("ran a notebook without CUDA"))
    device_before = os.environ.get("LABKIT_DEVICE")
    with pytest.raises(SystemExit) as stop:
        gpu.main(["12"])
    message = str(stop.value.code)
    assert "needs a CUDA GPU" in message and "torch.cuda.is_available() is False" in message
    assert torch.__version__ in message and "benchmarks/notebooks.py" in message
    assert os.environ.get("LABKIT_DEVICE") == device_before  # nothing was changed


def test_the_command_without_cuda_exits_1_with_the_message():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, str(SCRIPT), "--no-tests", "00"], env=env, capture_output=True, text=True, check=False,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 1
    assert "needs a CUDA GPU" in run.stderr and "Traceback" not in run.stderr


def test_table_puts_gpu_times_next_to_cpu_times():
    gpu = _script()
    gpu_results = {"12": {"wall_s": 10.0, "gpu_peak_mb": 912, "gpu": "NVIDIA H100 80GB HBM3"},
                   "99": {"wall_s": 4.0, "gpu_peak_mb": None, "gpu": None}}
    cpu_results = {"12": {"wall_s": 51.0, "cpus": 2}}
    lines = gpu.table(gpu_results, cpu_results).splitlines()
    assert lines[0] == "| notebook | CPU time | GPU time | speed-up | peak GPU memory | GPU |"
    assert lines[2] == "| 12 | 51 s (2 CPUs) | 10 s | 5.1× | 912 MB | NVIDIA H100 80GB HBM3 |"
    assert lines[3] == "| 99 | not measured | 4 s | – | – | – |"

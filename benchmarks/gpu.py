"""labkit on a CUDA GPU: run the unit tests there, then time every notebook on the GPU, next to its CPU time.

    python benchmarks/gpu.py                # unit tests, then every complete notebook
    python benchmarks/gpu.py 05 12          # unit tests, then these notebooks
    python benchmarks/gpu.py --no-tests     # the notebooks only
    python benchmarks/gpu.py --tests-only   # the unit tests only
    python benchmarks/gpu.py --dry-run      # measure and print, write nothing

1. **Unit tests**: ``python -m pytest tests/ --ignore=tests/test_browser.py`` (everything in ``tests/`` but the
   real-browser test, which needs Chromium, not a GPU) with ``LABKIT_DEVICE=cuda``, so labkit's default device
   is the GPU; the pass/fail counts go into the table's header. Extra pytest arguments: ``--pytest-args "-x -k dpo"``.
2. **Notebooks**: each complete notebook runs top to bottom in a fresh kernel with ``LABKIT_DEVICE=cuda`` (so
   ``labkit.setup()`` picks the GPU); the wall time of its cells, the kernel's peak GPU memory
   (``torch.cuda.max_memory_allocated()``: the tensors torch allocated, without the CUDA context of about
   0.5 GB) and its peak resident memory are measured. Each result goes to ``benchmarks/notebooks/NN@gpu.json``
   (which ``benchmarks/notebooks.py`` and the title cells read: "…; 12 s on cuda (NVIDIA …)").
3. **Table**: ``benchmarks/notebooks_gpu.md``: notebook, CPU time (``benchmarks/notebooks/NN.json``, measured by
   ``benchmarks/notebooks.py``), GPU time, speed-up, peak GPU memory, GPU name.

Without CUDA the script stops at once with a message saying so (exit status 1); it starts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # also when loaded by path (tests/test_gpu_benchmark.py)
from _timing import peak_rss_mb

from tools import notebooks as nbtools

OUT_DIR = ROOT / "benchmarks" / "notebooks"
OUT_MD = ROOT / "benchmarks" / "notebooks_gpu.md"
NO_CUDA = ("benchmarks/gpu.py needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False; "
           "torch {torch}{build}). Run it on a machine with an NVIDIA GPU and a CUDA build of torch (e.g. Colab with a "
           "GPU runtime); the CPU numbers come from `python benchmarks/notebooks.py`.")

#: Printed by the last cell of each measured notebook: the kernel's own view of the GPU.
_PROBE = """import json as _json, torch as _torch, labkit.runtime as _rt
print(_json.dumps({"device": _rt.get_device().type,
                   "gpu": _torch.cuda.get_device_name() if _torch.cuda.is_available() else None,
                   "gpu_peak_mb": _torch.cuda.max_memory_allocated() / 2**20 if _torch.cuda.is_available() else None}))"""


def require_cuda() -> str:
    """The GPU's name, or ``SystemExit`` with a clear message when torch sees no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        build = f", built for CUDA {torch.version.cuda}" if torch.version.cuda else ", a CPU-only build"
        raise SystemExit(NO_CUDA.format(torch=torch.__version__, build=build))
    return torch.cuda.get_device_name(0)


def run_unit_tests(extra: list[str], env: dict) -> dict:
    """``pytest tests/`` (without the browser test) on the GPU; returns counts from its JUnit report and the time."""
    report = ROOT / "benchmarks" / ".gpu_pytest.xml"
    cmd = [sys.executable, "-m", "pytest", "tests/", "--ignore=tests/test_browser.py", "-q", f"--junitxml={report}",
           *extra]
    print("running", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    code = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    seconds = time.perf_counter() - t0
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if report.is_file():
        root = ET.parse(report).getroot()
        for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        report.unlink()
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "exit_code": code, "seconds": round(seconds, 1)}


def measure(path: Path, timeout: int = 1200) -> dict:
    """Run the notebook top to bottom in a fresh kernel (which inherits ``LABKIT_DEVICE=cuda``); wall time of its
    cells, then the kernel's device, GPU name and peak GPU memory."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        t0 = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        wall = time.perf_counter() - t0
        probe = nbformat.v4.new_code_cell(_PROBE)
        client.execute_cell(probe, len(nb.cells))
        peak_rss = peak_rss_mb(pid)
    text = "".join(o.get("text", "") for o in probe.outputs).strip().splitlines()
    info = json.loads(text[-1]) if text else {}
    return {"wall_s": round(wall, 1), "peak_mb": round(peak_rss) if peak_rss else None,
            "gpu_peak_mb": None if info.get("gpu_peak_mb") is None else round(info["gpu_peak_mb"]),
            "gpu": info.get("gpu"), "kernel_device": info.get("device"), "cpus": os.cpu_count()}


def table(gpu_results: dict, cpu_results: dict) -> str:
    """The Markdown table: one row per GPU-measured notebook ``NN`` with its CPU time from ``cpu_results["NN"]``."""
    lines = ["| notebook | CPU time | GPU time | speed-up | peak GPU memory | GPU |", "|---|---|---|---|---|---|"]
    for key in sorted(gpu_results):
        g, c = gpu_results[key], cpu_results.get(key)
        cpu = f"{nbtools.format_duration(c['wall_s'])} ({c['cpus']} CPUs)" if c else "not measured"
        speed = f"{c['wall_s'] / g['wall_s']:.1f}×" if c and g["wall_s"] > 0 else "–"
        mem = "–" if g.get("gpu_peak_mb") is None else f"{g['gpu_peak_mb']} MB"
        lines.append(f"| {key} | {cpu} | {nbtools.format_duration(g['wall_s'])} | {speed} | {mem} | {g.get('gpu') or '–'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("numbers", nargs="*", help="notebook numbers, e.g. 05 12 (default: all)")
    parser.add_argument("--no-tests", action="store_true", help="skip the unit tests")
    parser.add_argument("--tests-only", action="store_true", help="run the unit tests only")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
    parser.add_argument("--dry-run", action="store_true", help="measure and print only: write no file")
    args = parser.parse_args(argv)
    if args.no_tests and args.tests_only:
        parser.error("--no-tests and --tests-only exclude each other")
    gpu_name = require_cuda()  # before anything starts
    import torch

    env = dict(os.environ, LABKIT_DEVICE="cuda")
    os.environ["LABKIT_DEVICE"] = "cuda"  # the notebook kernels started below inherit it
    tests = None if args.no_tests else run_unit_tests(shlex.split(args.pytest_args), env)
    if tests:
        print(f"unit tests on {gpu_name}: {tests['passed']} passed, {tests['failures']} failed, {tests['errors']} errors, "
              f"{tests['skipped']} skipped in {nbtools.format_duration(tests['seconds'])}", flush=True)
    results = {}
    if not args.tests_only:
        for path in nbtools.complete_notebooks(ROOT, args.numbers or None):
            print(f"running {path.name} on {gpu_name} …", flush=True)
            r = measure(path)
            r.update(device=f"cuda ({r['gpu'] or gpu_name})", date=dt.date.today().isoformat(),
                     machine={"platform": platform.platform(), "python": platform.python_version(),
                              "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu_name})
            results[path.name[:2]] = r
            print(f"  {nbtools.format_duration(r['wall_s'])}, peak GPU memory {r['gpu_peak_mb']} MB "
                  f"(kernel device: {r['kernel_device']})", flush=True)
            if not args.dry_run:
                OUT_DIR.mkdir(exist_ok=True)
                (OUT_DIR / f"{path.name[:2]}@gpu.json").write_text(json.dumps(r, indent=1) + "\n")
    stored = nbtools.benchmark_results(ROOT)
    cpu = {k: v for k, v in stored.items() if "@" not in k}
    if not args.dry_run:  # every notebook measured on a GPU so far, this run's included
        results = {k.removesuffix("@gpu"): v for k, v in stored.items() if k.endswith("@gpu")}
    text = table(results, cpu) if results else "(no notebook measured)"
    print(text)
    if not args.dry_run and (results or tests):
        header = f"# Notebook runtimes on a GPU\n\nMeasured by `python benchmarks/gpu.py` on {gpu_name} " \
                 f"(torch {torch.__version__}, CUDA {torch.version.cuda}), {dt.date.today().isoformat()}. " \
                 "CPU times: `benchmarks/notebooks.md`. Peak GPU memory is `torch.cuda.max_memory_allocated()` " \
                 "in the notebook's kernel (without the CUDA context).\n\n"
        if tests:
            header += (f"Unit tests on the GPU (`pytest tests/`, without the browser test): {tests['passed']} passed, "
                       f"{tests['failures']} failed, {tests['errors']} errors, {tests['skipped']} skipped, in "
                       f"{nbtools.format_duration(tests['seconds'])}.\n\n")
        OUT_MD.write_text(header + text + "\n")
    return 0 if not tests or tests["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

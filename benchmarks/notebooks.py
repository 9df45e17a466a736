"""Measure each notebook: wall time and peak memory of its kernel process, running top to bottom.

    python benchmarks/notebooks.py            # every complete notebook
    python benchmarks/notebooks.py 00 05      # just these
    python benchmarks/notebooks.py --no-stamp # measure without updating README and title cells
    python benchmarks/notebooks.py 05 --dry-run  # measure and print, write nothing
    python benchmarks/notebooks.py 05 --save     # also store the executed notebook's outputs (a fresh run)

Peak memory is the kernel's peak resident set size (``VmHWM`` in ``/proc/<pid>/status`` on Linux, polled RSS
elsewhere), so it includes Python, torch and the model. Each result goes to ``benchmarks/notebooks/NN.json``
(runs on a GPU to ``NN@gpu.json``) and the table of all of them to ``benchmarks/notebooks.md``; unless
``--no-stamp``, the measured notebooks' title cells and the README's course map are then re-stamped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _timing import peak_rss_mb

from labkit import threads
from tools import notebooks as nbtools

# The kernels started below inherit this: passive OpenMP waiting, threads within the CPU budget (labkit/threads.py).
os.environ.update(threads.thread_env())

OUT_DIR = ROOT / "benchmarks" / "notebooks"
OUT_MD = ROOT / "benchmarks" / "notebooks.md"


class _Poller(threading.Thread):
    """Fallback peak-RSS poller for systems without /proc."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc, self.peak, self.stop = psutil.Process(pid), 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss / 2**20)
            except psutil.Error:
                return
            time.sleep(0.05)


def measure(path: Path, timeout: int = 1200, save: bool = False) -> dict:
    """Run the notebook top to bottom in a fresh kernel; with ``save``, write its new outputs back to ``path``."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        poller = _Poller(pid)
        poller.start()
        t0 = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        wall = time.perf_counter() - t0
        poller.stop.set()
        peak = peak_rss_mb(pid) or poller.peak
        if save:  # before asking for the device: nbclient stores every executed cell into the notebook
            nbformat.write(nb, path)
        device = _kernel_device(client)
    return {"wall_s": round(wall, 1), "peak_mb": round(peak), "cpus": os.cpu_count(), "device": device}


def _kernel_device(client) -> str:
    """Ask the kernel which device labkit chose (cpu / cuda / mps)."""
    cell = nbformat.v4.new_code_cell("import labkit.runtime as _r; print(_r.get_device().type)")
    client.execute_cell(cell, 0)
    text = "".join(o.get("text", "") for o in cell.outputs)
    return text.strip() or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("numbers", nargs="*", help="notebook numbers, e.g. 00 05 (default: all)")
    parser.add_argument("--no-stamp", action="store_true", help="do not update the README and title cells")
    parser.add_argument("--dry-run", action="store_true", help="measure and print only: write no file")
    parser.add_argument("--save", action="store_true",
                        help="store the outputs of the measured run in the notebook (instead of a separate nbconvert run)")
    args = parser.parse_args(argv)

    paths = nbtools.complete_notebooks(ROOT, args.numbers or None)
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
               "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    for path in paths:
        print(f"running {path.name} …", flush=True)
        result = measure(path, save=args.save and not args.dry_run)
        result["date"] = dt.date.today().isoformat()
        result["machine"] = machine
        key = path.name[:2] if result["device"] == "cpu" else f"{path.name[:2]}@gpu"
        print(f"  {nbtools.format_duration(result['wall_s'])}, peak {result['peak_mb']} MB on {result['device']}", flush=True)
        if not args.dry_run:
            OUT_DIR.mkdir(exist_ok=True)
            (OUT_DIR / f"{key}.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.dry_run:
        return 0

    results = nbtools.benchmark_results(ROOT)
    lines = ["| notebook | device | wall time | peak memory (kernel) | measured |", "|---|---|---|---|---|"]
    for key, r in results.items():
        lines.append(f"| {key} | {r['device']} ({r['cpus']} CPUs) | {nbtools.format_duration(r['wall_s'])} | "
                     f"{r['peak_mb']} MB | {r['date']} |")
    total = sum(r["wall_s"] for key, r in results.items() if "@" not in key)
    table = "\n".join(lines)
    OUT_MD.write_text(f"# Notebook runtimes\n\nMeasured by `python benchmarks/notebooks.py` on {machine}.\n\n{table}\n\n"
                      f"Total on the CPU: {nbtools.format_duration(total)}.\n")
    print(table)
    if not args.no_stamp:
        nbtools.stamp_all(root=ROOT)  # all: notebook 00's course map shows every runtime
    return 0


if __name__ == "__main__":
    sys.exit(main())

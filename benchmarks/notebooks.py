"""Measure each notebook: wall time and peak memory of its kernel process, running top to bottom.

    python benchmarks/notebooks.py            # every complete notebook
    python benchmarks/notebooks.py 00 05      # just these
    python benchmarks/notebooks.py --no-stamp # measure without updating README and title cells

Peak memory is the kernel's peak resident set size (``VmHWM`` in ``/proc/<pid>/status`` on Linux, polled RSS
elsewhere), so it includes Python, torch and the model. Results go to ``benchmarks/notebooks.json`` and
``benchmarks/notebooks.md``; unless ``--no-stamp``, ``python -m labkit stamp`` then copies them into the
README's course map and each notebook's title cell. Runs on a GPU are stored under ``NN@gpu``.
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
from labkit import notebooks as nbtools  # noqa: E402

OUT_JSON = ROOT / "benchmarks" / "notebooks.json"
OUT_MD = ROOT / "benchmarks" / "notebooks.md"


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


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


def measure(path: Path, timeout: int = 1200) -> dict:
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
        peak = _peak_rss_mb(pid) or poller.peak
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
    args = parser.parse_args(argv)

    paths = [p for p in nbtools.complete_notebooks(ROOT) if not args.numbers or p.name[:2] in args.numbers]
    data = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {"notebooks": {}}
    for path in paths:
        print(f"running {path.name} …", flush=True)
        result = measure(path)
        result["date"] = dt.date.today().isoformat()
        key = path.name[:2] if result["device"] == "cpu" else f"{path.name[:2]}@gpu"
        data["notebooks"][key] = result
        print(f"  {nbtools.format_duration(result['wall_s'])}, peak {result['peak_mb']} MB on {result['device']}", flush=True)
    data["machine"] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                       "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    data["notebooks"] = dict(sorted(data["notebooks"].items()))
    OUT_JSON.write_text(json.dumps(data, indent=1) + "\n")

    lines = ["| notebook | device | wall time | peak memory (kernel) | measured |", "|---|---|---|---|---|"]
    for key, r in data["notebooks"].items():
        lines.append(f"| {key} | {r['device']} ({r['cpus']} CPUs) | {nbtools.format_duration(r['wall_s'])} | "
                     f"{r['peak_mb']} MB | {r['date']} |")
    table = "\n".join(lines)
    OUT_MD.write_text(f"# Notebook runtimes\n\nMachine: {data['machine']}\n\n{table}\n")
    print(table)
    if not args.no_stamp:
        nbtools.stamp_all(root=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared plumbing of the benchmarks: a results table printed and saved as JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_DIR = Path("benchmarks/results")


@dataclass
class Figure:
    benchmark: str
    metric: str
    value: float
    unit: str
    target: str = ""

    @property
    def text(self) -> str:
        return f"{self.value:,.0f}" if abs(self.value) >= 100 else f"{self.value:,.2f}"


def report(name: str, figures: list[Figure]) -> Path:
    """Print a table of figures and write them to benchmarks/results/<name>.json."""
    width = max(len(f.metric) for f in figures)
    # The machine may be shared: every table says how busy it was when it was measured.
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{name} (load average {load})")
    for figure in figures:
        target = f"  (target {figure.target})" if figure.target else ""
        print(f"  {figure.metric:<{width}}  {figure.text:>12} {figure.unit}{target}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": _cpus(),
            "load_average": list(os.getloadavg()),
        },
        "figures": [asdict(f) for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _cpus() -> int:
    return len(os.sched_getaffinity(0))

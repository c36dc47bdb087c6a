"""Small helpers the bench modules share: an emulator, a printed table, the machine's description."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from hyperv_emulator.api import EXAMPLE_FLEET, Emulator

Auth = Literal["basic", "ntlm"]


def start_emulator(
    auth: Auth = "basic", *, fleet: Path | str | dict[str, Any] = EXAMPLE_FLEET, time_scale: float = 1000.0
) -> Emulator:
    """A started emulator (stop it, or use it as a context manager). Emulated durations are divided by
    ``time_scale`` so a 3 s checkpoint takes 3 ms: the bench measures the client, not Hyper-V."""
    return Emulator(fleet=fleet, auth=auth, time_scale=time_scale).start()


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count() or "?"),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pypsrp": _version("pypsrp"),
        "apache-airflow": _version("apache-airflow"),
        "apache-airflow-providers-microsoft-psrp": _version("apache-airflow-providers-microsoft-psrp"),
    }


def print_machine_info(info: dict[str, str] | None = None) -> dict[str, str]:
    info = info or machine_info()
    print("Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    return info


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, title: str = ""
) -> list[dict[str, Any]]:
    """Print ``rows`` as a Markdown table (so it pastes into docs) and return them unchanged."""
    rows = list(rows)
    columns = list(columns or (rows[0].keys() if rows else []))
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}\n")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |")
    return rows

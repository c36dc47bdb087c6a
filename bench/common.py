"""What the bench modules share: the command line (``cli``: one parser builder, the option groups the
benches have in common), the report header and tables, an emulator, the machine's description, the
quiet per-auth measurement loop and the interleaved variant loop."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from hyperv_emulator.api import EXAMPLE_FLEET, Emulator

Auth = Literal["basic", "ntlm"]
T = TypeVar("T")


# -- the command line -------------------------------------------------------------------------------
def cli(
    module: str,
    doc: str | None,
    argv: Sequence[str] | None,
    *options: Callable[[argparse.ArgumentParser], Any],
) -> argparse.Namespace:
    """Parse ``argv`` (the process's arguments when None) for ``python -m <module>``: the first line of
    the module's docstring as the description, each of ``options`` adding its arguments."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or module).splitlines()[0])
    for add in options:
        add(parser)
    return parser.parse_args(list(sys.argv[1:] if argv is None else argv))


def request_options(unit: str, variants: Sequence[str]) -> Callable[[argparse.ArgumentParser], None]:
    """``--iterations``, ``--warmup``, ``--auth``, ``--variants``: the request-count benches' options
    (``unit``: what one iteration is, e.g. "runs", "cycles")."""

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--iterations", type=int, default=5, help=f"measured {unit} per variant (default 5)"
        )
        parser.add_argument(
            "--warmup", type=int, default=1, help=f"unmeasured {unit} per variant first (default 1)"
        )
        parser.add_argument("--auth", choices=("basic", "ntlm", "both"), default="both")
        parser.add_argument("--variants", nargs="+", choices=tuple(variants), default=list(variants))

    return add


def fleet_options(parser: argparse.ArgumentParser) -> None:
    """``--sizes``, ``--hosts``, ``--pool-slots``, ``--single-host``: the fleet makespan benches' options
    (call ``fleet_shape`` on the parsed arguments)."""
    parser.add_argument("--sizes", type=int, nargs="+", help="VM counts (default 10 100; --single-host: 100)")
    parser.add_argument("--hosts", type=int, default=10, help="emulated hosts (fewer if fewer VMs)")
    parser.add_argument("--pool-slots", type=int, default=2, help="slots of each host's pool")
    parser.add_argument(
        "--single-host",
        action="store_true",
        help="every VM on ONE host (--hosts 1, --sizes 100 unless given): the WinRM quota check",
    )


def fleet_shape(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve ``--single-host`` and the default sizes in place."""
    if args.single_host:
        args.hosts = 1
    if not args.sizes:
        args.sizes = [100] if args.single_host else [10, 100]
    return args


QUOTA_COLUMNS = (
    "vms", "host", "user", "peak_shells", "max_shells_per_user", "plugin_max_shells_per_user", "peak_operations",
    "max_operations_per_user", "quota_faults", "within_quotas",
)  # fmt: skip


def quota_rows(vms: int, usage: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``Emulator.quota_usage()`` rows with the fleet size and whether the run stayed under every quota:
    a peak above a limit or any QuotaLimit fault answered says no (printed, never hidden)."""
    rows = []
    for row in usage:
        shells_limit = min(row["max_shells_per_user"], row["plugin_max_shells_per_user"])
        within = (
            row["peak_shells"] <= shells_limit
            and row["peak_operations"] <= row["max_operations_per_user"]
            and row["quota_faults"] == 0
        )
        rows.append({"vms": vms, **row, "within_quotas": "yes" if within else "**NO**"})
    return rows


def auths(choice: str) -> list[Auth]:
    """``--auth basic|ntlm|both`` as the list of modes to measure."""
    return ["basic", "ntlm"] if choice == "both" else [cast(Auth, choice)]


def header(title: str) -> dict[str, str]:
    """A bench's report starts with its Markdown heading and the machine it ran on."""
    print(f"\n## {title}\n")
    return print_machine_info()


# -- measuring --------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet(sink: io.StringIO) -> Iterator[None]:
    """pypsrp, Airflow and PsrpHook log every call at INFO (PsrpHook's structlog logger to stdout):
    keep that out of the tables. Logging costs no requests, so the counts are unaffected."""
    logging.disable(logging.INFO)
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        logging.disable(logging.NOTSET)


def measure_each_auth(
    modes: Sequence[Auth], measure: Callable[[Auth], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``measure(auth)``'s rows for each mode, quietly; a mode whose measurement fails is reported with
    the last lines it logged, and the others go on (one auth mode failing says something too)."""
    rows: list[dict[str, Any]] = []
    for auth in modes:
        chatter = io.StringIO()
        try:
            with quiet(chatter):
                rows.extend(measure(auth))
        except Exception as exc:
            print(f"\n{auth}: the measurement failed: {type(exc).__name__}: {exc}")
            print("Last log lines:\n" + "\n".join(chatter.getvalue().splitlines()[-15:]))
    return rows


def request_bench(
    module: str,
    doc: str | None,
    argv: Sequence[str] | None,
    *,
    unit: str,
    variants: Sequence[str],
    title: str,
    what: str,
    measure: Callable[..., list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """A request-count bench's run: its command line (``request_options``; ``unit``: one iteration,
    e.g. "run"), its header, what one ``unit`` is (``what``) and how often it ran, then
    ``measure(auth, variants=, iterations=, warmup=)``'s rows for each auth mode asked for."""
    args = cli(module, doc, argv, request_options(f"{unit}s", variants))
    header(title)
    print(
        f"{what}; {args.iterations} measured {unit}(s) per variant after {args.warmup} warm-up, each on a "
        "fresh emulator (time_scale 1000)."
    )
    return measure_each_auth(
        auths(args.auth),
        lambda auth: measure(auth, variants=args.variants, iterations=args.iterations, warmup=args.warmup),
    )


def interleaved(
    run_once: Callable[[str], T],
    variants: Sequence[str],
    known: Iterable[str],
    *,
    iterations: int,
    warmup: int,
) -> dict[str, list[T]]:
    """``warmup`` unmeasured rounds (imports, first connections), then ``iterations`` measured samples of
    each variant, the variants in a rotating order so drift of the machine spreads evenly over them."""
    unknown = set(variants) - set(known)
    if unknown:
        raise ValueError(f"unknown variants: {sorted(unknown)}")
    for _ in range(warmup):
        for variant in variants:
            run_once(variant)
    samples: dict[str, list[T]] = {v: [] for v in variants}
    order = list(variants)
    for i in range(iterations):
        for variant in order[i % len(order) :] + order[: i % len(order)]:
            samples[variant].append(run_once(variant))
    return samples


def median_count(samples: Sequence[Any], pick: Callable[[Any], int]) -> int | str:
    """The median of ``pick(sample.counters)``; ``"m (a-b)"`` when the runs disagreed (a Receive more
    or less is timing)."""
    values = sorted(pick(s.counters) for s in samples)
    mid = values[len(values) // 2]
    return mid if values[0] == values[-1] else f"{mid} ({values[0]}-{values[-1]})"


def leading_number(value: int | str) -> float:
    """A count as ``median_count`` wrote it, as a number (its median)."""
    return float(str(value).split(" ", 1)[0])


def add_ratios(rows: list[dict[str, Any]], references: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per row: WS-Man, HTTP and wall-time ratios (``wsman_vs_<suffix>``, ...) against each reference
    variant of ``references`` (variant, suffix) that was measured."""
    by_variant = {r["variant"]: r for r in rows}
    for row in rows:
        for ref_name, suffix in references:
            ref = by_variant.get(ref_name)
            if ref is None:
                continue
            for key, short in (
                ("wsman_requests", "wsman"),
                ("http_requests", "http"),
                ("wall_ms_median", "wall"),
            ):
                row[f"{short}_vs_{suffix}"] = round(leading_number(row[key]) / leading_number(ref[key]), 2)
    return rows


def growth(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """How each of ``keys`` grew from the smallest fleet (the first row) to the largest (the last)."""
    if len(rows) < 2:
        return []
    small, big = rows[0], rows[-1]
    return [
        {
            "measure": key,
            f"{small['vms']} VMs": small[key],
            f"{big['vms']} VMs": big[key],
            "growth": round(big[key] / small[key], 2) if small[key] else "n/a",
        }
        for key in keys
    ]


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


def _process_table() -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    """Every live process: its parent, and (own, reaped) clock ticks: utime + stime, and cutime + cstime
    (the children it has waited for)."""
    parent: dict[int, int] = {}
    ticks: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        parent[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = (int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    return parent, ticks


def tree_cpu_split(root: int) -> tuple[float, float, float]:
    """CPU seconds of the process ``root`` itself, of its live descendants themselves, and of every
    descendant that has ended and was waited for (for the scheduler of a LocalExecutor: the scheduler,
    its executor workers, and the task processes that came and went). Their sum is ``tree_cpu_seconds``."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    parent, ticks = _process_table()
    if root not in ticks:
        return 0.0, 0.0, 0.0
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    own = ticks[root][0]
    descendants = sum(ticks[pid][0] for pid in seen if pid != root)
    reaped = sum(ticks[pid][1] for pid in seen)
    return own / tick, descendants / tick, reaped / tick


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds (user + system) of the processes ``roots`` and all their live descendants, each with
    the children it has already waited for (``/proc/<pid>/stat`` utime, stime, cutime, cstime): what a
    deployment's processes, including task processes that came and went, have used so far. A live
    child's time is not in its parent's cutime yet, so nothing is counted twice."""
    return sum(sum(tree_cpu_split(pid)) for pid in set(roots))


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

"""``airflow-hyperv``: the demo and the real Airflow UI on the emulated example fleet.

Both need the emulator distribution (``pip install "airflow-hyperv[emulator]"``; ``make setup`` installs it).
"""

from __future__ import annotations

import argparse
import sys


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be a number from 0 to 65535, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be from 0 to 65535, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-hyperv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the nightly DAG against the example fleet and print the report")
    ui = commands.add_parser(
        "airflow", help="start the real Airflow UI with the emulator and the example DAGs"
    )
    ui.add_argument("--port", type=_port, default=8080, help="Airflow API/UI port (default 8080)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from airflow_hyperv.cli import demo
    except ModuleNotFoundError as exc:
        if exc.name != "hyperv_emulator" and not (exc.name or "").startswith("hyperv_emulator."):
            raise
        print(
            'airflow-hyperv: the demo needs the emulator: pip install "airflow-hyperv[emulator]"',
            file=sys.stderr,
        )
        return 2
    if args.command == "demo":
        return demo.run_demo()
    if args.command == "airflow":
        return demo.run_airflow_ui(args.port)
    raise AssertionError(args.command)  # argparse enforces the choices


if __name__ == "__main__":
    sys.exit(main())

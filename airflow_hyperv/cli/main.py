"""``airflow-hyperv``: run the Hyper-V host emulator, or the demo."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

PASSWORD_ENV = "AIRFLOW_HYPERV_EMULATOR_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be a number from 0 to 65535, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be from 0 to 65535, not {value}")
    return value


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--time-scale must be a number, not {text!r}") from None
    if not 0 < value <= 100000:
        raise argparse.ArgumentTypeError(f"--time-scale must be above 0 and at most 100000, not {value}")
    return value


def _fleet(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"--fleet {text!r}: no such file")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-hyperv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    emu = commands.add_parser("emulator", help="serve an emulated Hyper-V fleet over WinRM/PSRP")
    emu.add_argument("--fleet", type=_fleet, required=True, help="fleet file (YAML), see docs/emulator.md")
    emu.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    emu.add_argument("--port", type=_port, default=0, help="port to bind (default 0: any free port)")
    emu.add_argument(
        "--auth", choices=["ntlm", "basic"], default="ntlm", help="authentication (default ntlm)"
    )
    emu.add_argument("--tls", action="store_true", help="HTTPS with a self-signed certificate made at start")
    emu.add_argument("--username", default="hyperv-admin", help="the account clients log in with")
    emu.add_argument("--root", type=Path, default=None, help="directory for the hosts' files (default: temp)")
    emu.add_argument(
        "--time-scale",
        type=_scale,
        default=1.0,
        help="emulated seconds per real second (speed-up; default 1)",
    )

    commands.add_parser("demo", help="run the nightly DAG against the example fleet and print the report")
    ui = commands.add_parser(
        "airflow", help="start the real Airflow UI with the emulator and the example DAGs"
    )
    ui.add_argument("--port", type=_port, default=8080, help="Airflow API/UI port (default 8080)")
    return parser


def run_emulator(args: argparse.Namespace) -> int:
    from airflow_hyperv.emulator.api import Emulator
    from airflow_hyperv.emulator.model.fleet import FleetError

    password = os.environ.get(PASSWORD_ENV)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        emulator = Emulator(
            args.fleet,
            bind=args.host,
            port=args.port,
            auth=args.auth,
            tls=args.tls,
            username=args.username,
            password=password,
            root_dir=args.root,
            time_scale=args.time_scale,
        )
        emulator.start()
    except FleetError as exc:
        print(f"airflow-hyperv emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"airflow-hyperv emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    try:
        if password is None:
            print(f"credentials for {args.username} in {emulator.write_credentials_file()}", flush=True)
        if emulator.ca_cert_path:
            print(f"certificate {emulator.ca_cert_path}", flush=True)
        print(f"listening on {emulator.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        emulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "emulator":
        return run_emulator(args)
    if args.command == "demo":
        from airflow_hyperv.cli.demo import run_demo

        return run_demo()
    if args.command == "airflow":
        from airflow_hyperv.cli.demo import run_airflow_ui

        return run_airflow_ui(args.port)
    raise AssertionError(args.command)  # argparse enforces the choices


if __name__ == "__main__":
    sys.exit(main())

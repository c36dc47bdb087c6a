"""``hyperv-emulator``: serve an emulated Hyper-V fleet over WinRM/WS-Management + PSRP."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from hyperv_emulator.api import Emulator
from hyperv_emulator.model.fleet import FleetError

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
    parser = argparse.ArgumentParser(prog="hyperv-emulator", description=__doc__)
    parser.add_argument("--fleet", type=_fleet, required=True, help="fleet file (YAML), see docs/emulator.md")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="port to bind (default 0: any free port)")
    parser.add_argument(
        "--auth", choices=["ntlm", "basic"], default="ntlm", help="authentication (default ntlm)"
    )
    parser.add_argument(
        "--tls", action="store_true", help="HTTPS with a self-signed certificate made at start"
    )
    parser.add_argument("--username", default="hyperv-admin", help="the account clients log in with")
    parser.add_argument(
        "--root", type=Path, default=None, help="directory for the hosts' files (default: temp)"
    )
    parser.add_argument(
        "--time-scale",
        type=_scale,
        default=1.0,
        help="emulated seconds per real second (speed-up; default 1)",
    )

    return parser


def run_emulator(args: argparse.Namespace) -> int:
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
        print(f"hyperv-emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"hyperv-emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
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
    return run_emulator(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

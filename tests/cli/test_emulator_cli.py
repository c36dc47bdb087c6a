"""The ``hyperv-emulator`` command: starts, says where it listens, refuses bad input clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from hyperv_emulator.api import EXAMPLE_FLEET

CLI = [sys.executable, "-m", "hyperv_emulator.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ([], "--fleet"),
        (["--fleet", "/nonexistent.yaml"], "no such file"),
        (["--fleet", str(EXAMPLE_FLEET), "--port", "99999"], "--port must be from 0 to 65535"),
        (["--fleet", str(EXAMPLE_FLEET), "--auth", "kerberos"], "invalid choice"),
        (
            ["--fleet", str(EXAMPLE_FLEET), "--time-scale", "fast"],
            "--time-scale must be a number",
        ),
    ],
)
def test_bad_flags_name_the_problem(args, problem):
    result = run(*args)
    assert result.returncode == 2 and problem in result.stderr


def test_bad_fleet_file_names_file_and_field(tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "hosts:\n  - name: hv-01\n    vms:\n      - name: a\n        checkpoint_type: Sometimes\n"
    )
    result = run("--fleet", str(fleet))
    assert result.returncode == 2
    assert "fleet.yaml" in result.stderr and "checkpoint_type" in result.stderr and "a" in result.stderr


def test_serves_and_prints_one_listening_line(tmp_path):
    env = {**os.environ, "AIRFLOW_HYPERV_EMULATOR_PASSWORD": "s3cret-for-test"}
    proc = subprocess.Popen(
        [*CLI, "--fleet", str(EXAMPLE_FLEET), "--auth", "basic", "--root", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith("/wsman")
        from pypsrp.powershell import PowerShell, RunspacePool
        from pypsrp.wsman import WSMan

        port = int(line.rsplit(":", 1)[1].split("/")[0])
        wsman = WSMan("127.0.0.1", port=port, username="hyperv-admin", password="s3cret-for-test", ssl=False,
                      auth="basic", encryption="never", no_proxy=True)  # fmt: skip
        with RunspacePool(wsman) as pool:
            ps = PowerShell(pool)
            ps.add_cmdlet("Get-VMHost")
            assert ps.invoke()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert "s3cret-for-test" not in (proc.stdout.read() if proc.stdout else "")

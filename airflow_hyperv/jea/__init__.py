"""The JEA role capability the provider needs on a Hyper-V host (docs/connection.md documents it).

``ROLE_CAPABILITY`` is the ``AirflowHyperV.psrc`` shipped in this package: copy it to
``C:\\Program Files\\WindowsPowerShell\\Modules\\AirflowHyperV\\RoleCapabilities\\`` on the host. Its text is
exactly the role block of docs/connection.md (a test keeps the two identical).
"""

from __future__ import annotations

from pathlib import Path

ROLE_CAPABILITY = Path(__file__).parent / "AirflowHyperV.psrc"

__all__ = ["ROLE_CAPABILITY"]

"""A Hyper-V host emulator that speaks real WinRM/WS-Management + PSRP.

Layers, each with one job:
- ``runtime``: the seam between protocol and host (what a pipeline is, where its output goes).
- ``model/``: the Hyper-V model (state, rules, errors). Pure Python, no sockets.
- ``cmdlets/``: thin per-cmdlet handlers over the model, and the serialiser to PSObjects.
- ``wsman/``: WS-Management + PSRP state machines, no sockets.
- ``server``: HTTP(S) listener, authentication (Basic, NTLM/Negotiate with message encryption).
- ``api``: the ``Emulator`` context manager that composes the above for tests and the CLI.
"""

__version__ = "0.2.0"

"""A Hyper-V host emulator that speaks real WinRM/WS-Management + PSRP.

Two one-way stacks meet at the seam ``host_runtime`` (what each layer may import is said with it;
``tests/emulator/test_layers.py`` checks it):

- ``host_runtime``: the seam between a pipeline and the host (what a statement is, where its output
  and errors go, ``CommandHost``). Imports nothing of the package.
- ``model/``: the Hyper-V model (state, rules, errors). Pure Python, no sockets; imports only itself,
  ``host_runtime`` (``ErrorSpec``) and ``faults``. ``host`` composes ``merging`` (the merge engine),
  ``exporting``, ``vhd`` and ``importing``; ``fleet`` loads fleet files; ``event_query`` is
  Get-WinEvent's XPath subset; ``errors`` holds one exception class per real FullyQualifiedErrorId.
- ``cmdlets/``: thin per-noun cmdlet handlers over the model (``vm_cmdlets``, ``snapshot_cmdlets``,
  ``disk_cmdlets``, ``network_cmdlets``, ``winevent_cmdlets``, ``file_cmdlets``, ``volume_cmdlets``),
  their shared preamble and registry (``base``), parameter binding, JEA restricted mode (``jea``),
  the PSObject schemas (``psobject_schemas``) and the serialiser (``serialize``), the audit log, and
  ``command_host.HyperVCommandHost``; imports ``model`` and ``host_runtime``, never ``wsman``.
- ``wsman/``: WS-Management + PSRP state machines, no sockets; talks to a host only through
  ``host_runtime``, never ``cmdlets`` or ``model``.
- ``server``: HTTP(S) listener, authentication (Basic, NTLM/Negotiate with message encryption); ``wsman``.
- ``api``: the ``Emulator`` context manager and ``command_hosts`` (a fleet with its command hosts),
  composing the above for tests and the CLI (``cli``).
"""

__version__ = "0.2.0"

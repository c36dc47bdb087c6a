"""WS-Management / WinRM protocol state machines of the emulator (no sockets; see ``server.py``)."""

"""The pure Hyper-V host model: state, rules, timings and errors. No sockets, no psrpcore.

Everything a real host does over time (checkpoints taking seconds, exports copying at a rate, merges
finishing after Remove-VMSnapshot returned) is driven by a ``Clock``; timed transitions settle lazily
whenever the model is read, so a test with a ``ManualClock`` decides when "later" is.
"""

from hyperv_emulator.model.clock import Clock, ManualClock, ScaledClock
from hyperv_emulator.model.errors import HyperVError
from hyperv_emulator.model.fleet import Fleet, FleetError
from hyperv_emulator.model.host import HostModel, Timing

__all__ = [
    "Clock",
    "Fleet",
    "FleetError",
    "HostModel",
    "HyperVError",
    "ManualClock",
    "ScaledClock",
    "Timing",
]

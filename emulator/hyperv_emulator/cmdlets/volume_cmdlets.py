"""Get-Volume (Storage module): the volume that holds a path, with its size and free space.

Real hosts (windows-powershell-docs ``winserver2022-ps/storage/Get-Volume.md``): parameter sets
ByDriveLetter (default, ``-DriveLetter <Char[]>``, position 0), ByPaths (``-Path``: the volume's own
``\\\\?\\Volume{GUID}\\`` path), ByLabel (``-FileSystemLabel``) and ByFilePath (``-FilePath <String>``,
alias ``FullName``: "the cmdlet gets the volume for the file path that you specify"). It writes
``MSFT_Volume`` CIM instances (``Size``, ``SizeRemaining`` in bytes, ``DriveLetter`` empty for a
volume mounted on a folder, ``FileSystem`` ``CSVFS`` for a Cluster Shared Volume). Get-Volume is a
CDXML *function* of the Storage module, not a compiled cmdlet (``Get-Command Get-Volume`` shows
CommandType Function), so a JEA role lists it under ``VisibleFunctions``.

A query that matches nothing is the CDXML "not found" error: ``No MSFT_Volume objects found with
property 'DriveLetter' equal to 'Z'.  Verify the value of the property and retry.``, FQID
``CmdletizationQuery_NotFound_DriveLetter,Get-Volume``, ObjectNotFound. For ``-FilePath`` of a path
that does not exist or of a UNC share the real answer is *unconfirmed*; this host answers the same
not-found error, and the client treats any error as "free space unknown".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hyperv_emulator.cmdlets.base import Call, cmdlet
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.cmdlets.output_views import VolumeView
from hyperv_emulator.model.errors import HyperVError, ParameterBindingError, VolumeNotFoundError


@cmdlet(
    "Get-Volume",
    "Get-Volume",
    [
        Param("DriveLetter", "strings", position=0),
        Param("FilePath", "string", ("FullName",)),
        Param("Path", "strings"),
        Param("FileSystemLabel", "strings"),
    ],
)
def get_volume(call: Call) -> Iterator[Any]:
    chosen = [p for p in ("DriveLetter", "FilePath", "Path", "FileSystemLabel") if call.has(p)]
    if len(chosen) > 1:
        raise ParameterBindingError.parameter_set()
    fs = call.host.fs
    volumes = fs.all_volumes()
    if not chosen:
        hits = volumes
    elif call.has("FilePath"):
        path = call.get("FilePath")
        try:
            hits = [fs.volume_for(path)] if fs.to_real(path).exists() else []
        except HyperVError:
            hits = []
        if not hits:
            call.error(VolumeNotFoundError("FilePath", path), path)
    else:
        prop = chosen[0]
        hits = []
        for value in call.get(prop):
            if prop == "DriveLetter":
                found = [v for v in volumes if v.letter and v.letter.lower() == value.lower()]
            elif prop == "Path":
                found = [v for v in volumes if v.device_path(call.host.name).lower() == value.lower()]
            else:
                found = [v for v in volumes if v.label and v.label.lower() == value.lower()]
            if not found:
                call.error(VolumeNotFoundError(prop, value), value)
            hits.extend(v for v in found if v not in hits)
    for vol in hits:
        call.touch(vol.root)
        yield VolumeView(call.host, vol)

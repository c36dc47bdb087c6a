"""File-system cmdlets the provider needs to verify exports and read free space.

Paths are Windows paths on the emulated host (``C:\\…``, ``D:\\Backups\\…``, or PSPath
``Microsoft.PowerShell.Core\\FileSystem::C:\\…``). ``-Path`` is taken literally here (no wildcard
expansion: a documented simplification); clients should use ``-LiteralPath`` anyway. Files a VM has open
(its current and checkpoint disks) cannot be removed or moved, as on a real host.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hyperv_emulator.cmdlets.base import Call, cmdlet
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.cmdlets.output_views import DriveInfoView, FileHashView, FileItem
from hyperv_emulator.model.errors import (
    ConfirmationRequiredError,
    DriveNotFoundError,
    FileExistsError_,
    FileInUseError,
    HyperVError,
    ItemExistsError,
    OperationFailedError,
    ParameterBindingError,
    PathNotFoundError,
    UnauthorizedAccessError,
)
from hyperv_emulator.model.wildcard import WildcardPattern

NS = "Microsoft.PowerShell.Commands."
LITERAL = Param("LiteralPath", "strings", ("PSPath", "LP"))
PATH = Param("Path", "strings", position=0)
HASHES = ("SHA1", "SHA256", "SHA384", "SHA512", "MD5")


def _paths(call: Call) -> list[str]:
    paths = (call.get("LiteralPath") or []) + (call.get("Path") or [])
    if not paths:
        raise ParameterBindingError.missing_mandatory(["Path"])
    return paths


def _each(call: Call, paths: list[str]) -> Iterator[tuple[str, Path]]:
    """Resolve each path; a missing one is a PathNotFound error and the cmdlet goes on."""
    for p in paths:
        try:
            real = call.host.fs.to_real(p)
        except HyperVError as err:
            call.error(err, p)
            continue
        if not real.exists():
            call.error(PathNotFoundError(p), p)
            continue
        call.touch(call.host.fs.to_windows(real))
        yield p, real


def _each_not_in_use(call: Call, paths: list[str]) -> Iterator[tuple[str, Path]]:
    """``_each``, less the files a VM has open (each one a FileInUse error; the cmdlet goes on)."""
    for p, real in _each(call, paths):
        used = _in_use(call, real)
        if used:
            call.error(FileInUseError(used), p)
            continue
        yield p, real


def _in_use(call: Call, real: Path) -> str | None:
    fs = call.host.fs
    for vm in call.host.vms():
        disks = [d.disk for d in vm.hard_drives] + [d for c in vm.checkpoints for d in c.frozen.values()]
        for disk in {id(x): x for d in disks for x in d.chain()}.values():
            disk_real = fs.to_real(disk.path)
            if disk_real == real or real in disk_real.parents:
                return disk.path
    return None


@cmdlet(
    "Get-ChildItem",
    NS + "GetChildItemCommand",
    [
        PATH,
        LITERAL,
        Param("Recurse", "switch", ("s",)),
        Param("File", "switch"),
        Param("Directory", "switch"),
        Param("Force", "switch"),
        Param("Depth", "int"),
    ],
    aliases=("gci", "dir", "ls"),
)
def get_child_item(call: Call) -> Iterator[Any]:
    for _, real in _each(
        call, _paths(call) if (call.has("Path") or call.has("LiteralPath")) else [call.host.fs.cwd]
    ):
        if real.is_file():
            items = [real]
        else:
            items = sorted(
                real.rglob("*") if call.flag("Recurse") else real.iterdir(), key=lambda p: str(p).lower()
            )
        for item in items:
            if call.flag("File") and not item.is_file():
                continue
            if call.flag("Directory") and not item.is_dir():
                continue
            yield FileItem(call.host, item)


@cmdlet(
    "Get-FileHash",
    "Microsoft.PowerShell.Commands.GetFileHashCommand",
    [PATH, LITERAL, Param("Algorithm", "choice", choices=HASHES)],
)
def get_file_hash(call: Call) -> Iterator[Any]:
    algorithm = call.get("Algorithm", "SHA256")
    for _, real in _each(call, _paths(call)):
        if real.is_dir():
            continue  # real Get-FileHash skips directories silently
        h = hashlib.new(algorithm.lower())
        with real.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        yield FileHashView(algorithm, h.hexdigest().upper(), call.host.fs.to_windows(real))


@cmdlet(
    "Test-Path",
    NS + "TestPathCommand",
    [
        PATH,
        LITERAL,
        Param("PathType", "choice", choices=("Any", "Container", "Leaf")),
        Param("IsValid", "switch"),
    ],
)
def test_path(call: Call) -> Iterator[Any]:
    kind = call.get("PathType", "Any")
    for p in _paths(call):
        try:
            real = call.host.fs.to_real(p)
        except DriveNotFoundError:
            yield False
            continue
        except HyperVError:
            yield False
            continue
        call.touch(call.host.fs.to_windows(real))
        if call.flag("IsValid"):
            yield True
        elif kind == "Container":
            yield real.is_dir()
        elif kind == "Leaf":
            yield real.is_file()
        else:
            yield real.exists()


@cmdlet(
    "New-Item",
    NS + "NewItemCommand",
    [
        PATH,
        Param("Name", "string"),
        Param("ItemType", "choice", ("Type",), choices=("Directory", "File")),
        Param("Force", "switch"),
        Param("Value", "string"),
    ],
    aliases=("ni",),
    should_process=True,
)
def new_item(call: Call) -> Iterator[Any]:
    fs = call.host.fs
    item_type = call.get("ItemType", "File")
    for p in call.get("Path") or [fs.cwd]:
        target = fs.join(p, call.get("Name")) if call.has("Name") else p
        real = fs.to_real(target)
        if not call.should_process(fs.to_windows(real)):
            continue
        if item_type == "File" and real.is_file():
            if not call.flag("Force"):
                call.error(FileExistsError_(fs.to_windows(real)), target)
                continue
            real.write_text(call.get("Value", ""), encoding="utf-8")  # FileMode.Create truncates
        elif real.exists():
            if not (call.flag("Force") and real.is_dir() and item_type == "Directory"):
                call.error(ItemExistsError(fs.to_windows(real)), target)
                continue
        elif item_type == "Directory":
            real.mkdir(parents=True)
        else:
            if not real.parent.is_dir():
                if not call.flag("Force"):
                    call.error(PathNotFoundError(fs.to_windows(real.parent)), target)
                    continue
                real.parent.mkdir(parents=True)
            try:  # FileMode.CreateNew: atomic, so two clients racing for one file get one winner
                with real.open("x", encoding="utf-8") as handle:
                    handle.write(call.get("Value", ""))
            except FileExistsError:
                call.error(FileExistsError_(fs.to_windows(real)), target)
                continue
        yield FileItem(call.host, real)


@cmdlet(
    "Get-Content",
    NS + "GetContentCommand",
    [PATH, LITERAL, Param("Raw", "switch"), Param("Encoding", "string")],
    aliases=("gc", "cat", "type"),
)
def get_content(call: Call) -> Iterator[Any]:
    """A text file's lines (or, with -Raw, its whole text as one string); a folder is an error."""
    for p, real in _each(call, _paths(call)):
        if real.is_dir():
            call.error(UnauthorizedAccessError(call.host.fs.to_windows(real)), p)
            continue
        text = real.read_text(encoding="utf-8")
        if call.flag("Raw"):
            yield text
        else:
            yield from text.splitlines()


@cmdlet(
    "Move-Item",
    NS + "MoveItemCommand",
    [
        PATH,
        LITERAL,
        Param("Destination", "string", position=1, mandatory=True),
        Param("Force", "switch"),
        Param("PassThru", "switch"),
    ],
    aliases=("mv", "move"),
    should_process=True,
)
def move_item(call: Call) -> Iterator[Any]:
    fs = call.host.fs
    for p, _ in _each_not_in_use(call, _paths(call)):
        if not call.should_process(call.get("Destination")):
            continue
        try:
            moved = fs.move(p, call.get("Destination"))
        except HyperVError as err:
            call.error(err, p)
            continue
        if call.flag("PassThru"):
            yield FileItem(call.host, moved)


@cmdlet(
    "Remove-Item",
    NS + "RemoveItemCommand",
    [PATH, LITERAL, Param("Recurse", "switch", ("r",)), Param("Force", "switch")],
    aliases=("rm", "del", "ri", "rd", "rmdir"),
    should_process=True,
)
def remove_item(call: Call) -> Iterator[Any]:
    fs = call.host.fs
    for p, real in _each_not_in_use(call, _paths(call)):
        if fs.is_drive_root(real):
            call.error(OperationFailedError(f"Cannot remove the root of drive {real.name}:."), p)
            continue
        if not call.should_process():
            continue
        if real.is_dir() and any(real.iterdir()) and not call.flag("Recurse"):
            # A real host would prompt "The item has children…"; this host cannot prompt.
            call.error(ConfirmationRequiredError("Remove Directory", fs.to_windows(real)), p)
            continue
        fs.remove(p, recurse=True)
    yield from ()


@cmdlet(
    "Get-PSDrive",
    NS + "GetPSDriveCommand",
    [Param("Name", "strings", position=0), Param("PSProvider", "strings"), Param("Scope", "string")],
    aliases=("gdr",),
)
def get_psdrive(call: Call) -> Iterator[Any]:
    providers = [p.lower() for p in call.get("PSProvider") or []]
    if providers and not any(p in ("filesystem", "microsoft.powershell.core\\filesystem") for p in providers):
        return
    volumes = list(call.host.fs.volumes.values())
    for name in call.get("Name") or ["*"]:
        wp = WildcardPattern(name.rstrip(":"))
        hits = [v for v in volumes if wp.match(v.letter)]
        if not hits:
            call.error(DriveNotFoundError(name), name)
        for vol in hits:
            call.touch(f"{vol.letter}:")
            yield DriveInfoView(call.host, vol)

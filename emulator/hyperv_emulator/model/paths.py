"""Windows paths on a real directory: ``C:\\Hyper-V\\vm1`` lives at ``<root>/C/Hyper-V/vm1``.

Lookups are case-insensitive like NTFS (an existing entry's spelling wins), ``..`` is normalised the
way Windows does it (never above the drive root) and nothing can resolve outside the host's root.
Files keep a *logical* size next to their small real stand-in, so a 60 GB disk costs a few KB on the
test machine while the volume's free space, export and merge timings still see 60 GB.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hyperv_emulator.model.errors import DriveNotFoundError, InvalidPathError, PathNotFoundError

_DRIVE = re.compile(r"^([A-Za-z]):(.*)$", re.DOTALL)
_UNC = re.compile(r"^\\\\([^\\]+)\\([^\\]+)(.*)$", re.DOTALL)
_ILLEGAL = set('<>:"|?*') | {chr(c) for c in range(32)}
_PROVIDER_PREFIXES = ("microsoft.powershell.core\\filesystem::", "filesystem::")
STANDIN_MAGIC = "HVEMU"
# Logical sizes of files on shares, kept once for every host that maps a share (keys are real paths):
# a file one host exported has the same size when another host reads it.
_SHARE_SIZES: dict[str, int] = {}
_SHARE_LOCK = threading.RLock()


@dataclass
class Volume:
    """One volume of the host: its capacity and what is used outside the model (OS, other data).

    A volume has a drive letter (``letter``) or is mounted on a folder of another volume
    (``mount_point``, e.g. a Cluster Shared Volume at ``C:\\ClusterStorage\\Volume1`` or a mount
    point like ``D:\\Mounts\\Fast``): its files live under that folder, and count for this volume,
    not for the drive the folder is on.
    """

    letter: str
    capacity: int
    reserved: int = 0
    label: str = ""
    mount_point: str = ""  # "C:\\ClusterStorage\\Volume1"; empty for a drive-letter volume
    file_system: str = "NTFS"  # NTFS, ReFS, CSVFS (a CSV reports CSVFS)
    guid: str = ""  # the \\?\Volume{GUID}\ path's GUID; derived from the host and root when empty

    @property
    def root(self) -> str:
        """Where the volume is reached: ``C:\\`` or ``C:\\ClusterStorage\\Volume1\\``."""
        return f"{self.letter}:\\" if not self.mount_point else self.mount_point.rstrip("\\") + "\\"

    def device_path(self, host_name: str) -> str:
        """The volume's own ``\\\\?\\Volume{GUID}\\`` path (Get-Volume's ``Path`` and ``UniqueId``)."""
        guid = self.guid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"volume:{host_name}/{self.root.lower()}"))
        return f"\\\\?\\Volume{{{guid}}}\\"


@dataclass(frozen=True)
class Share:
    """An SMB share (``\\\\server\\share``) the host can reach; several hosts may map one real folder."""

    unc: str  # as spelled when added, e.g. \\\\backup01\\exports
    real: Path
    volume: Volume


@dataclass(frozen=True)
class _SharedMount:
    mount_point: str  # as normalised by add_mount
    drive: str
    parts: list[str]  # lower case
    real: Path
    sizes: dict[str, int]
    lock: threading.RLock


class HostFileSystem:
    """The host's drives mapped onto ``root``; thread-safe for the bookkeeping it keeps."""

    def __init__(
        self,
        root: Path,
        volumes: dict[str, Volume],
        cwd: str = "C:\\Users\\Administrator\\Documents",
        mounts: Sequence[Volume] = (),
    ):
        self.root = root
        self.volumes = {k.upper(): v for k, v in volumes.items()}
        self.cwd = cwd
        self.shares: dict[str, Share] = {}  # upper-case \\\\SERVER\\SHARE -> share
        self._logical: dict[str, int] = {}
        self._lock = threading.RLock()
        root.mkdir(parents=True, exist_ok=True)
        for letter in self.volumes:
            (root / letter).mkdir(exist_ok=True)
        self.mounts: list[Volume] = []
        # Folder mounts whose files live in a real folder shared with other hosts (a Cluster Shared
        # Volume).
        self._shared: list[_SharedMount] = []
        for vol in mounts:
            self.add_mount(vol)

    def add_mount(self, vol: Volume) -> None:
        """Mount ``vol`` on an (empty or new) folder of a drive-letter volume."""
        drive, parts = self.split(vol.mount_point)
        if not parts:
            raise InvalidPathError(
                vol.mount_point, f"A volume cannot be mounted on a drive root ({vol.mount_point})."
            )
        vol.mount_point = drive + ":\\" + "\\".join(parts)
        if any(m.mount_point.lower() == vol.mount_point.lower() for m in self.mounts):
            raise InvalidPathError(vol.mount_point, f"A volume is already mounted at {vol.mount_point}.")
        self.to_real(vol.mount_point).mkdir(parents=True, exist_ok=True)
        self.mounts.append(vol)

    def add_shared_mount(self, vol: Volume, real: Path, sizes: dict[str, int], lock: threading.RLock) -> None:
        """Mount ``vol`` like ``add_mount``, its files in ``real``: a folder every node of a cluster
        mounts at the same place (``C:\\ClusterStorage\\Volume1``), with one size table for all."""
        real.mkdir(parents=True, exist_ok=True)
        self.add_mount(vol)  # the local folder stays (empty): the parent lists the mount point
        drive, parts = self.split(vol.mount_point)
        self._shared.append(
            _SharedMount(vol.mount_point, drive, [p.lower() for p in parts], real, sizes, lock)
        )

    def _shared_for(self, drive: str, parts: list[str]) -> tuple[Path, list[str]] | None:
        """(real folder, the rest of the path) when ``drive:\\parts`` is on a shared mount."""
        low = [p.lower() for p in parts]
        for m in self._shared:
            if m.drive == drive and low[: len(m.parts)] == m.parts:
                return m.real, parts[len(m.parts) :]
        return None

    def all_volumes(self) -> list[Volume]:
        """Drive-letter volumes, then folder-mounted ones (Get-Volume lists both)."""
        return [*self.volumes.values(), *self.mounts]

    def volume_for(self, path: str) -> Volume:
        """The volume that holds ``path``: the deepest mount point above it, else its drive's volume
        (what GetVolumePathName answers on Windows)."""
        drive, parts = self.split(path)
        best: Volume | None = None
        best_depth = -1
        for vol in self.mounts:
            mdrive, mparts = self.split(vol.mount_point)
            if mdrive != drive or len(mparts) > len(parts):
                continue
            if [c.lower() for c in parts[: len(mparts)]] == [c.lower() for c in mparts] and len(
                mparts
            ) > best_depth:
                best, best_depth = vol, len(mparts)
        return best if best is not None else self._volume(drive)

    def _volume_real_root(self, vol: Volume) -> Path:
        if vol.mount_point:
            drive, parts = self.split(vol.mount_point)
            shared = self._shared_for(drive, parts)
            if shared is not None and not shared[1]:
                return shared[0]
        for share in self.shares.values():
            if share.volume is vol:
                return share.real
        return self.to_real(vol.root)

    def add_share(self, unc: str, real: Path, capacity: int) -> Share:
        """Serve ``\\\\server\\share`` from ``real``; give several hosts the same ``real`` to model one
        file server they all write to (an export root shared by a fleet)."""
        m = _UNC.match(unc.rstrip("\\"))
        if m is None or m.group(3):
            raise ValueError(f"a share is \\\\server\\share, not {unc!r}")
        key = f"\\\\{m.group(1)}\\{m.group(2)}".upper()
        real.mkdir(parents=True, exist_ok=True)
        share = Share(f"\\\\{m.group(1)}\\{m.group(2)}", real, Volume(key, capacity))
        self.shares[key] = share
        return share

    def _drive_root(self, drive: str) -> Path:
        share = self.shares.get(drive.upper())
        return share.real if share is not None else self.root / drive.upper()

    def _volume(self, which: str | Volume) -> Volume:
        """A volume by drive letter or share (``\\\\SERVER\\SHARE``), or the Volume itself."""
        if isinstance(which, Volume):
            return which
        share = self.shares.get(which.upper())
        return share.volume if share is not None else self.volumes[which.upper()]

    def is_drive_root(self, real: Path) -> bool:
        """True for the root of a drive letter or of a share (Remove-Item refuses those)."""
        if any(real == share.real for share in self.shares.values()):
            return True
        return real.parent == self.root

    # --- path mapping -------------------------------------------------------------------------------

    def split(self, path: str) -> tuple[str, list[str]]:
        """Normalise a Windows path to (drive letter, components) like Windows' GetFullPathName."""
        text = str(path).strip()
        low = text.lower()
        for prefix in _PROVIDER_PREFIXES:
            if low.startswith(prefix):
                text = text[len(prefix) :]
                break
        text = text.replace("/", "\\")
        m = _DRIVE.match(text)
        if text.startswith("\\\\"):
            unc = _UNC.match(text)
            key = f"\\\\{unc.group(1)}\\{unc.group(2)}".upper() if unc else ""
            if key not in self.shares:
                raise InvalidPathError(
                    path, f"The path '{path}' is a UNC or device path this host does not serve."
                )
            assert unc is not None
            drive, rest = key, unc.group(3)
        elif m is None:
            if text.startswith("\\"):
                drive, rest = self.cwd[0], text
            else:
                drive, rest = self.cwd[0], self.cwd[2:] + "\\" + text
        else:
            drive, rest = m.group(1), m.group(2)
        drive = drive.upper()
        if drive not in self.volumes and drive not in self.shares:
            raise DriveNotFoundError(drive)
        parts: list[str] = []
        for comp in rest.split("\\"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if parts:
                    parts.pop()
                continue
            trimmed = comp.rstrip(" .")  # Windows drops trailing dots and spaces
            if not trimmed:
                continue
            if any(ch in _ILLEGAL for ch in trimmed):
                raise InvalidPathError(path)
            parts.append(trimmed)
        return drive, parts

    def normalize(self, path: str) -> str:
        """Canonical Windows spelling, reusing the case of entries that already exist."""
        return self.to_windows(self.to_real(path))

    def to_real(self, path: str) -> Path:
        drive, parts = self.split(path)
        top = self._drive_root(drive)
        shared = self._shared_for(drive, parts)
        if shared is not None:
            top, parts = shared
        real = top
        for comp in parts:
            real = real / self._existing_name(real, comp)
        resolved_root = top.resolve()
        resolved = real.resolve()
        if resolved != resolved_root and resolved_root not in resolved.parents:
            raise InvalidPathError(path, f"The path '{path}' is outside this host.")
        return real

    @staticmethod
    def _existing_name(parent: Path, name: str) -> str:
        if (parent / name).exists() or not parent.is_dir():
            return name
        low = name.lower()
        for entry in parent.iterdir():
            if entry.name.lower() == low:
                return entry.name
        return name

    def to_windows(self, real: Path) -> str:
        for m in self._shared:
            if real == m.real or m.real in real.parents:
                return "\\".join([m.mount_point.rstrip("\\"), *real.relative_to(m.real).parts])
        for share in self.shares.values():
            if real == share.real or share.real in real.parents:
                return "\\".join([share.unc, *real.relative_to(share.real).parts])
        rel = real.relative_to(self.root)
        drive, *rest = rel.parts
        return drive + ":\\" + "\\".join(rest)

    def join(self, base: str, *names: str) -> str:
        return "\\".join([base.rstrip("\\"), *names])

    # --- logical sizes and free space ---------------------------------------------------------------

    def _sizes(self, real: Path) -> tuple[dict[str, int], threading.RLock]:
        for m in self._shared:
            if real == m.real or m.real in real.parents:
                return m.sizes, m.lock
        for share in self.shares.values():
            if real == share.real or share.real in real.parents:
                return _SHARE_SIZES, _SHARE_LOCK
        return self._logical, self._lock

    def logical_size(self, real: Path) -> int:
        sizes, lock = self._sizes(real)
        with lock:
            size = sizes.get(str(real))
        return size if size is not None else real.stat().st_size

    def set_logical(self, real: Path, size: int) -> None:
        sizes, lock = self._sizes(real)
        with lock:
            sizes[str(real)] = size

    def _forget(self, real: Path) -> None:
        prefix = str(real) + "/"
        sizes, lock = self._sizes(real)
        with lock:
            for key in [k for k in sizes if k == str(real) or k.startswith(prefix)]:
                del sizes[key]

    def used(self, which: str | Volume) -> int:
        """Bytes used on a volume (a drive letter or a Volume): files under its root, except those
        under a volume mounted deeper, which belong to that one."""
        vol = self._volume(which)
        top = self._volume_real_root(vol)
        nested = [
            self._volume_real_root(m)
            for m in self.mounts
            if m is not vol and top in self._volume_real_root(m).parents
        ]
        return vol.reserved + sum(
            self._size_if_present(f)
            for f in self._walk_files(top)
            if not any(n == f or n in f.parents for n in nested)
        )

    def _size_if_present(self, real: Path) -> int:
        """A file another pipeline removes while the volume is being summed counts as gone."""
        try:
            return self.logical_size(real)
        except FileNotFoundError:
            return 0

    def free(self, which: str | Volume) -> int:
        vol = self._volume(which)
        return max(0, vol.capacity - self.used(vol))

    def free_at(self, path: str) -> int:
        """Free bytes of the volume that holds ``path``."""
        return self.free(self.volume_for(path))

    @staticmethod
    def _walk_files(top: Path) -> Iterator[Path]:
        # os.walk skips folders that vanish mid-walk (a concurrent Remove-Item of a staging folder);
        # Path.rglob raises FileNotFoundError there.
        for folder, _, files in os.walk(top):
            for name in files:
                yield Path(folder) / name

    def tree_size(self, real: Path) -> int:
        if real.is_file():
            return self.logical_size(real)
        return sum(self._size_if_present(f) for f in self._walk_files(real))

    # --- file operations (what the model and the file cmdlets do) ------------------------------------

    def write_standin(
        self, path: str, header: dict[str, object], logical: int, *, fraction: float = 1.0
    ) -> Path:
        """Write a small real file standing for ``logical`` bytes; ``fraction`` < 1 leaves it truncated."""
        real = self.to_real(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(standin_bytes(header, fraction))
        self.set_logical(real, int(logical * fraction) if fraction < 1 else logical)
        return real

    def mkdir(self, path: str) -> Path:
        real = self.to_real(path)
        real.mkdir(parents=True, exist_ok=True)
        return real

    def remove(self, path: str, *, recurse: bool = False) -> None:
        real = self.to_real(path)
        if not real.exists():
            raise PathNotFoundError(path)
        if real.is_dir():
            if any(real.iterdir()) and not recurse:
                raise InvalidPathError(
                    path, f"The item at {path} has children and the Recurse parameter was not specified."
                )
            shutil.rmtree(real)
        else:
            real.unlink()
        self._forget(real)

    def move(self, src: str, dst: str) -> Path:
        s, d = self.to_real(src), self.to_real(dst)
        if not s.exists():
            raise PathNotFoundError(src)
        if d.is_dir():
            d = d / s.name
        if d.exists():
            raise InvalidPathError(dst, "Cannot create a file when that file already exists.")
        if not d.parent.is_dir():
            raise PathNotFoundError(self.to_windows(d.parent))
        (from_sizes, from_lock), (to_sizes, to_lock) = self._sizes(s), self._sizes(d)
        with from_lock, to_lock:
            moved = {k: v for k, v in from_sizes.items() if k == str(s) or k.startswith(str(s) + "/")}
            shutil.move(str(s), str(d))
            for k, v in moved.items():
                del from_sizes[k]
                to_sizes[str(d) + k[len(str(s)) :]] = v
        return d


def standin_bytes(header: dict[str, object], fraction: float = 1.0) -> bytes:
    """A deterministic small body: a JSON header line then padding derived from it (so hashes are stable)."""
    head = (STANDIN_MAGIC + " " + json.dumps(header, sort_keys=True) + "\n").encode()
    seed = hashlib.sha256(head).digest()
    body = head + seed * 64  # 2 KiB of padding
    if fraction < 1:
        return body[: int(len(body) * max(0.0, fraction))]
    return body


def read_standin_header(real: Path) -> dict[str, object] | None:
    """The header of a stand-in file, or None for anything else (or a truncated one)."""
    try:
        with real.open("rb") as fh:
            line = fh.readline(8192)
    except OSError:
        return None
    if not line.startswith(STANDIN_MAGIC.encode() + b" ") or not line.endswith(b"\n"):
        return None
    try:
        data = json.loads(line[len(STANDIN_MAGIC) + 1 :])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None

"""Validation of names and paths, and the deterministic names of the checkpoints this provider makes.

Everything here runs before a host is contacted, so bad input fails with a clear message and nothing
changes. Values are still sent as bound parameters: validation is about meaning, not escaping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata

from airflow_hyperv.hyperv.errors import InvalidInputError, WildcardNameError

WILDCARD_CHARACTERS = frozenset("*?[]`")  # PowerShell WildcardPattern metacharacters and its escape
MAX_VM_NAME_LENGTH = 100  # Hyper-V Manager refuses longer VM names
MAX_CHECKPOINT_NAME_LENGTH = 100
# What a user may give as a folder (an export root, a restore root): 200 characters leave room below
# Windows' MAX_PATH for what the provider and Hyper-V put under it.
MAX_PATH_LENGTH = 200
# What Windows allows for a path the provider generates (an export's own folders and files): MAX_PATH is
# 260 including the terminating NUL, so 259 characters; a folder must leave room for an 8.3 file name
# (MAX_PATH - 12, again with the NUL: 247). Hyper-V's VMMS is not documented as long-path aware, so the
# provider never counts on \\?\ paths (learn.microsoft.com "Maximum Path Length Limitation").
MAX_GENERATED_PATH_LENGTH = 259
MAX_GENERATED_FOLDER_LENGTH = 247

CHECKPOINT_PREFIX = "airflow-hyperv"
_OURS = re.compile(rf"^{CHECKPOINT_PREFIX} \d{{8}}T\d{{4}}Z [0-9a-f]{{12}}$")
_DRIVE_PATH = re.compile(r"^[A-Za-z]:\\")
_UNC_PATH = re.compile(r"^\\\\[^\\/]+\\[^\\/]+")
_FORBIDDEN_IN_PATH = frozenset('<>"|?*')


def _control_characters(value: str) -> list[str]:
    return [repr(c) for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]


def require_exact_name(value: object, what: str = "VM name", max_length: int = MAX_VM_NAME_LENGTH) -> str:
    """Return ``value`` if it can only ever mean one exact name; raise a clear error otherwise."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidInputError(f"{what} is empty")
    if value != value.strip():
        raise InvalidInputError(f"{what} {value!r} has leading or trailing white space")
    if len(value) > max_length:
        raise InvalidInputError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    if bad := _control_characters(value):
        raise InvalidInputError(f"{what} {value!r} contains control characters {', '.join(sorted(set(bad)))}")
    if found := sorted(set(value) & WILDCARD_CHARACTERS):
        raise WildcardNameError(
            f"{what} {value!r} contains wildcard characters {' '.join(found)}: Hyper-V would treat it as a "
            "pattern and could match other VMs. Give the exact name, or the VM's Id."
        )
    return value


def require_host_path(value: object, what: str = "path", *, max_length: int = MAX_PATH_LENGTH) -> str:
    """An absolute Windows path on the host (``D:\\Backups\\x`` or ``\\\\server\\share\\x``), no ``..``.

    ``max_length`` is the user-input limit by default; code that checks a path it generated passes
    ``MAX_GENERATED_PATH_LENGTH`` (what Windows itself allows)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must be a non-empty string")
    if len(value) > max_length:
        raise InvalidInputError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    if bad := _control_characters(value):
        raise InvalidInputError(f"{what} {value!r} contains control characters {', '.join(sorted(set(bad)))}")
    if "/" in value:
        raise InvalidInputError(f"{what} {value!r} uses '/': give a Windows path with '\\'")
    if not (_DRIVE_PATH.match(value) or _UNC_PATH.match(value)):
        raise InvalidInputError(f"{what} {value!r} is not an absolute Windows path like D:\\Backups")
    body = value[2:]
    if found := sorted(set(body) & _FORBIDDEN_IN_PATH) + ([":"] if ":" in body else []):
        raise InvalidInputError(
            f"{what} {value!r} contains characters Windows forbids in paths: {' '.join(found)}"
        )
    parts = [p for p in body.split("\\") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidInputError(f"{what} {value!r} contains '.' or '..' components")
    if any(p != p.rstrip(" .") for p in parts):
        raise InvalidInputError(f"{what} {value!r} has a component ending in a space or a dot")
    return value.rstrip("\\") if len(value) > 3 else value


def host_path(value: object, what: str = "path") -> str:
    """``require_host_path`` with Windows' own limit: for paths the provider or the host generated."""
    return require_host_path(value, what, max_length=MAX_GENERATED_PATH_LENGTH)


def require_generated_paths(paths: dict[str, str]) -> None:
    """Refuse, before anything changes, generated paths Windows could not create (MAX_PATH).

    ``paths`` maps each path to ``"file"`` or ``"folder"``; the message names the longest offender.
    """
    too_long = []
    for path, kind in paths.items():
        limit = MAX_GENERATED_FOLDER_LENGTH if kind == "folder" else MAX_GENERATED_PATH_LENGTH
        if len(path) > limit:
            too_long.append((len(path) - limit, path, kind, limit))
    if too_long:
        _, path, kind, limit = max(too_long)
        raise InvalidInputError(
            f"the export would need the {kind} path {path!r} ({len(path)} characters), longer than the "
            f"{limit} Windows allows (MAX_PATH): choose a shorter export root, VM name or disk file name"
        )


def join_host_path(base: str, *parts: str) -> str:
    return "\\".join([base.rstrip("\\"), *(p.strip("\\") for p in parts)])


def checkpoint_name(*, dag_id: str, run_id: str, vm_id: str, logical_date: dt.datetime) -> str:
    """The one name a run gives its checkpoint of a VM: a retry computes the same name and finds it.

    The prefix marks checkpoints this provider made; the hash ties it to (DAG, run, VM) without
    putting user text (which may hold wildcard characters) into the name.
    """
    digest = hashlib.sha256(f"{dag_id}\0{run_id}\0{vm_id.lower()}".encode()).hexdigest()[:12]
    when = logical_date.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%MZ")
    return f"{CHECKPOINT_PREFIX} {when} {digest}"


def is_provider_checkpoint(name: str) -> bool:
    """True only for names ``checkpoint_name`` makes: other tools' checkpoints are never ours."""
    return bool(_OURS.match(name))

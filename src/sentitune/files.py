"""Writing files so that nobody ever reads half of one.

Every file sentitune publishes (run files, predictions, reports, figures) is written to a
partial file beside its target and renamed over it only when complete. A partial file is
named `.NAME.PID.partial` (a folder `.NAME.PID-ID.partial`): a process killed midway leaves
one behind, and the next write of the same target removes it once its writer is no longer
alive. Published files get the
permissions the umask gives any new file, so a server running as another user can read
the weights a training job wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete `.NAME.PID.partial` files and `.NAME.PID-ID.partial` folders left beside
    `path` by writers that have died."""
    removed = []
    for leftover in path.parent.glob(f".{path.name}.*{PARTIAL_SUFFIX}"):
        pid = leftover.name[len(path.name) + 2: -len(PARTIAL_SUFFIX)].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a partial path beside `path`; rename it over `path` only on success.

    The yielded path does not exist yet: the caller creates it (so it gets the umask's
    permissions, unlike a `mkstemp` file's 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    partial.unlink(missing_ok=True)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=2, default=jsonable,
                                       ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> Path:
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=jsonable) + "\n"
                                    for r in records))


def jsonable(value: Any) -> Any:
    """numpy scalars and arrays as plain Python values (json.dumps' `default`)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden folder beside `path`; on success it replaces `path` (an earlier
    version is swapped out), on failure it is removed. A killed writer's folder is removed
    by the next writer of `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
                             f"{PARTIAL_SUFFIX}")
    partial.mkdir()  # not mkdtemp: its 0700 mode would outlive the rename
    try:
        yield partial
        replace_dir(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def replace_dir(new: Path, path: Path) -> None:
    """Rename the finished folder `new` to `path`, swapping out an earlier `path`: readers
    see the old folder or the new one, for no longer than two renames neither."""
    if not path.exists():
        new.rename(path)
        return
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
    path.rename(old)
    new.rename(path)
    shutil.rmtree(old)


def follow_umask(folder: str | os.PathLike) -> None:
    """Give every file under `folder` the permissions a new file gets: libraries that save
    through private temporary files (safetensors does) leave them 0600."""
    mask = os.umask(0)
    os.umask(mask)
    for path in Path(folder).rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~mask)

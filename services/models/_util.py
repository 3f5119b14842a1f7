"""Small helpers shared by the model builders: lazy imports and atomic folder swaps."""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'milo[models]'"


class ModelsError(RuntimeError):
    """Preparing a model failed in a way the user can act on; the message says how."""


class MissingDependencyError(ModelsError):
    """An optional heavy library needed to prepare models is not installed."""


def require(module: str) -> ModuleType:
    """Import `module` lazily, or say what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", 1)[0]
        raise MissingDependencyError(
            f"preparing models needs the '{top}' package: {INSTALL_HINT}"
        ) from exc


def optional(module: str) -> ModuleType | None:
    """Import `module` if it is installed (for checks that only run when it is), else None."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


@contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A fresh folder next to `target`; on success it replaces `target`, else it is removed.

    Readers of `target` never see a half-written model: the swap is two renames.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    try:
        yield staging
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(source: Path, target: Path) -> None:
    """Move `source` to `target`, removing whatever `target` held before."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    source.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (POSIX flock; no-op where unavailable).

    Keeps two processes (e.g. parallel test sessions) from building the same folder at
    once. Not re-entrant: nested sections must use different lock files.
    """
    fcntl = optional("fcntl")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' progress bars (noise for models of a few hundred kB)."""
    transformers = optional("transformers")
    if transformers is None:
        yield
        return
    tf_logging = transformers.utils.logging
    was_enabled = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            tf_logging.enable_progress_bar()


def folder_size(path: Path) -> int:
    """Total bytes of the files under `path` (or of `path` itself if it is a file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

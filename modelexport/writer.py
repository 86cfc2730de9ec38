"""Versioned, atomic writes: a version folder appears complete, or not at all.

TF Serving lists the model folder about once a second and loads every child whose
name is an integer, so a version written in place can be loaded half written and
then fail, or worse, load and fail at inference. Each version is therefore written
into a non-numeric folder beside the versions (same filesystem, which TF Serving
ignores) and renamed to its number only once it is complete.
"""

import errno
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelexport.errors import ExportError, VersionExists

VERSION_NAME = re.compile(r"[0-9]+")


def parse_version(name: str) -> int | None:
    """Return the version a folder name stands for, as TF Serving reads it, or None."""
    if not VERSION_NAME.fullmatch(name):
        return None
    version = int(name)
    return version if version > 0 else None


def version_dirs(model_root: Path) -> dict[int, Path]:
    """Map each version number under model_root to its folder; other entries are ignored."""
    if not model_root.is_dir():
        return {}
    found: dict[int, Path] = {}
    for child in sorted(model_root.iterdir()):
        version = parse_version(child.name)
        if version is not None and child.is_dir():
            found[version] = child
    return found


def next_version(model_root: Path) -> int:
    """Return one more than the highest version under model_root, or 1 for a new model."""
    return max(version_dirs(model_root), default=0) + 1


def check_version_free(model_root: Path, version: int, *, force: bool) -> bool:
    """Return whether version exists; raise VersionExists if it does and force is off."""
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    existing = version_dirs(model_root).get(version)
    if existing is not None and not force:
        raise VersionExists(
            f"{existing} already exists. Pass --force to replace it, or leave out --version "
            f"to write version {next_version(model_root)}."
        )
    return existing is not None


@contextmanager
def staged_version(model_root: Path, version: int, *, force: bool) -> Iterator[Path]:
    """Yield an empty temporary folder; on success rename it to model_root/version.

    If the body raises, the temporary folder is removed and no version appears.
    """
    model_root.mkdir(parents=True, exist_ok=True)
    staging = model_root / f".tmp-{version}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        yield staging
        publish(staging, model_root, version, force=force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(staging: Path, model_root: Path, version: int, *, force: bool) -> Path:
    """Rename the finished staging folder to its version number, replacing it only if forced."""
    target = model_root / str(version)
    existing = version_dirs(model_root).get(version)
    if existing is None:
        rename_into_place(staging, target)
        return target
    if not force:
        raise VersionExists(f"{existing} appeared while exporting; nothing was replaced")
    # rename() cannot swap a non-empty folder, so the old version steps aside first
    # (to a name TF Serving ignores) and comes back if the new one cannot take its place.
    retired = model_root / f".old-{version}-{secrets.token_hex(4)}"
    existing.rename(retired)
    try:
        rename_into_place(staging, target)
    except BaseException:
        retired.rename(existing)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return target


def rename_into_place(staging: Path, target: Path) -> None:
    """Rename staging to target, reporting a concurrent writer as VersionExists."""
    try:
        staging.rename(target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or isinstance(exc, FileExistsError):
            raise VersionExists(f"{target} appeared while exporting; nothing was replaced") from exc
        raise

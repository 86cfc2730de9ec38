"""Write the requirement files and the gateway image's lock from pyproject.toml.

pyproject.toml declares every dependency once, as extras. The requirement files
are for whoever installs without the project (the stack workflow's export step);
gateway/requirements.lock is the gateway image's whole dependency tree, hashed.
`make lock` runs this:

    python tools/dependencies.py          # rewrite the files
    python tools/dependencies.py --check  # write nothing; fail if one is out of step

The lock keeps the versions it already pins: delete it first to move them to the
newest releases the extra allows. Resolving needs the package index.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from uv import find_uv_bin

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = "pyproject.toml"
# Each requirement file and the extra it is written from.
REQUIREMENT_FILES = {
    "gateway/requirements.txt": "gateway",
    "requirements-export.txt": "export",
    "requirements-dev.txt": "dev",
}
LOCK = "gateway/requirements.lock"
LOCKED_EXTRA = "gateway"
# gateway/Dockerfile's base image, whatever machine resolves: python:3.11 on Linux.
# Markers are resolved for it; the hashes cover every platform's files of a release.
IMAGE_PYTHON = "3.11"
IMAGE_PLATFORM = "linux"


def render_requirements(extra: str) -> str:
    """Return the requirement file written from pyproject.toml's `extra`."""
    project = tomllib.loads((ROOT / PYPROJECT).read_text(encoding="utf-8"))["project"]
    pins = project["optional-dependencies"][extra]
    header = f"# Written by `make lock` from pyproject.toml's `{extra}` extra: edit that instead.\n"
    return header + "".join(f"{pin}\n" for pin in pins)


def compile_lock(output: Path) -> None:
    """Resolve the locked extra into `output`, keeping the versions `output` already pins."""
    subprocess.run(
        [
            find_uv_bin(),
            "pip",
            "compile",
            "--quiet",
            PYPROJECT,  # relative: the lock's `# via` lines name it as written
            "--extra",
            LOCKED_EXTRA,
            "--generate-hashes",
            "--python-version",
            IMAGE_PYTHON,
            "--python-platform",
            IMAGE_PLATFORM,
            "--custom-compile-command",
            "make lock",
            "--output-file",
            str(output),
        ],
        cwd=ROOT,
        check=True,
    )


def write_all() -> None:
    """Rewrite every requirement file and the lock."""
    for name, extra in REQUIREMENT_FILES.items():
        (ROOT / name).write_text(render_requirements(extra), encoding="utf-8")
    compile_lock(ROOT / LOCK)


def stale_files() -> list[str]:
    """Return the files that differ from what `write_all` would write."""
    stale = [
        name
        for name, extra in REQUIREMENT_FILES.items()
        if not (ROOT / name).is_file()
        or (ROOT / name).read_text(encoding="utf-8") != render_requirements(extra)
    ]
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "requirements.lock"
        if (ROOT / LOCK).is_file():
            shutil.copyfile(ROOT / LOCK, fresh)  # its pins are the versions to keep
        compile_lock(fresh)
        if not (ROOT / LOCK).is_file() or (ROOT / LOCK).read_bytes() != fresh.read_bytes():
            stale.append(LOCK)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Rewrite the files, or with --check report those out of step."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of step"
    )
    if not parser.parse_args(argv).check:
        write_all()
        return 0
    stale = stale_files()
    for name in stale:
        print(f"{name} is out of step with {PYPROJECT}: run `make lock`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

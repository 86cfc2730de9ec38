"""The repository stands on its own: no file points at something outside the checkout.

Protocol notes live in docs/tf-serving-protocol.md. A path into a folder next to
the checkout, or into one machine's home or work tree, means nothing to anyone
who clones the repository.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The character class and the escapes keep this file from matching itself.
# Absolute paths are limited to home and work trees: /tmp/ has legitimate uses
# (tmpfs mounts, scratch files), and a lookbehind skips relative paths and URLs.
_OUTSIDE = re.compile(
    r"\.\./shared"
    r"|shared[/]reference"
    r"|tf-serving-api\.md"
    r"|(?<![\w.])/(?:work|root|home)/"
)


def repository_files() -> list[Path]:
    """Tracked files, plus new ones not yet added that .gitignore does not exclude."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    paths = (ROOT / name for name in sorted(set(listing.split("\0"))) if name)
    # A tracked file deleted in the working tree is not listed content any more.
    return [path for path in paths if path.is_file() and not path.is_symlink()]


def test_no_file_refers_outside_the_repository() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    hits = []
    for path in repository_files():
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if _OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "References outside the repository:\n" + "\n".join(hits)

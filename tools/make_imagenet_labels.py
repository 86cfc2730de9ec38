"""Generate modelexport/imagenet_labels.txt, the 1001 class names every model version carries.

Run once by hand (the output is committed; exports never run this):

    python tools/make_imagenet_labels.py

The names come from torchvision's `_IMAGENET_CATEGORIES` (torchvision/models/_meta.py,
BSD-3-Clause): the 1000 ImageNet-1k classes in the standard synset order, which is the
order TF Hub's ImageNetLabels.txt uses after its "background" line. The wheel is fetched
with `pip download` and read as a zip archive; torchvision is never installed or imported.
The file written is "background" followed by the 1000 names, one per line, no header.

Keep TORCHVISION_VERSION in step with LABELS_PROVENANCE in modelexport/labels.py.
"""

import ast
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TORCHVISION_VERSION = "0.29.1"
META_PATH = "torchvision/models/_meta.py"
CATEGORIES_NAME = "_IMAGENET_CATEGORIES"
# _meta.py is pure Python and the same in every wheel; a fixed platform and Python
# make pip fetch the same file on any machine, a Mac or Windows laptop included.
WHEEL_PLATFORM = "manylinux_2_28_x86_64"
WHEEL_PYTHON = "3.12"

OUTPUT = Path(__file__).resolve().parents[1] / "modelexport" / "imagenet_labels.txt"
BACKGROUND = "background"
FIRST_CLASS = "tench"
LAST_CLASS = "toilet tissue"
CLASS_COUNT = 1000


def download_wheel(dest: Path) -> Path:
    """Fetch the torchvision wheel into dest without installing it or its dependencies."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += [
        "--only-binary=:all:",
        "--platform",
        WHEEL_PLATFORM,
        "--python-version",
        WHEEL_PYTHON,
    ]
    command += ["--dest", str(dest), f"torchvision=={TORCHVISION_VERSION}"]
    subprocess.run(command, check=True)
    wheels = sorted(dest.glob("torchvision-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one torchvision wheel in {dest}, found {wheels}")
    return wheels[0]


def read_categories(source: str) -> list[str]:
    """Return the literal list assigned to _IMAGENET_CATEGORIES in _meta.py's source."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == CATEGORIES_NAME for t in targets):
            names = ast.literal_eval(value)
            check_categories(names)
            return list(names)
    raise SystemExit(f"{CATEGORIES_NAME} not found in {META_PATH}")


def check_categories(names: object) -> None:
    """Refuse anything but 1000 one-line names from tench to toilet tissue."""
    if not isinstance(names, list) or len(names) != CLASS_COUNT:
        raise SystemExit(f"{CATEGORIES_NAME} is not a list of {CLASS_COUNT} names")
    if not all(isinstance(n, str) and n.strip() == n and n and "\n" not in n for n in names):
        raise SystemExit(f"{CATEGORIES_NAME} holds an empty or multi-line name")
    if (names[0], names[-1]) != (FIRST_CLASS, LAST_CLASS):
        raise SystemExit(
            f"{CATEGORIES_NAME} runs {names[0]!r}..{names[-1]!r}, "
            f"not the standard synset order {FIRST_CLASS!r}..{LAST_CLASS!r}"
        )


def main() -> None:
    """Download, parse and write the label file, then print its provenance."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            meta = archive.read(META_PATH)
    names = read_categories(meta.decode("utf-8"))
    OUTPUT.write_text("\n".join([BACKGROUND, *names]) + "\n", encoding="utf-8")
    digest = hashlib.sha256(meta).hexdigest()
    print(f"wrote {OUTPUT} ({len(names) + 1} lines)")
    print(f"source: torchvision {TORCHVISION_VERSION}, {META_PATH} sha256 {digest}, BSD-3-Clause")


if __name__ == "__main__":
    main()

"""pyproject.toml declares every dependency once, and what is made from it stays in step.

`make lock` (tools/dependencies.py) writes the requirement files and the gateway
image's hash-locked tree, gateway/requirements.lock. Checked here: both match
pyproject.toml, every pin is exact and the same in every extra, whatever the code
imports is pinned, and neither the image nor the embedded extra brings TensorFlow.
"""

import ast
import re
import shutil
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tools.dependencies import (
    IMAGE_PYTHON,
    LOCK,
    LOCKED_EXTRA,
    REQUIREMENT_FILES,
    compile_lock,
    render_requirements,
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
# The project's code, and the test helpers its tests import by bare name.
SOURCES = (
    "gateway",
    "modelexport",
    "bench",
    "tools",
    "tfserving_double",
    "test",
    "export_model.py",
    "conftest.py",
)
# Imported by gateway/runtimes.py only for EMBEDDED_RUNTIME=tensorflow (or a version
# without a TFLite copy), which needs the export extra beside the embedded one.
GATEWAY_OPTIONAL_IMPORTS = frozenset({"tensorflow"})
PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==\d[0-9A-Za-z.+!-]*")
HASH = re.compile(r"sha256:[0-9a-f]{64}")
TENSORFLOW_FAMILY = re.compile(r"^(tensorflow|keras|tf-)")


def canonical(name: str) -> str:
    """Return the normalised name (PEP 503): `ruamel.yaml` and `Ruamel_YAML` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_extras_named(requirement: str) -> list[str] | None:
    """Return the extras a requirement on this project itself names, None for another package."""
    name, _, named = requirement.partition("[")
    if canonical(name) != canonical(PROJECT["name"]):
        return None
    return [extra.strip() for extra in named.rstrip("]").split(",")]


def pins_of(extra: str) -> dict[str, str]:
    """Return {name: version} for the extra, the project's extras it names included."""
    pins: dict[str, str] = {}
    for requirement in EXTRAS[extra]:
        named = project_extras_named(requirement)
        if named is None:
            name, _, version = requirement.partition("==")
            pins[canonical(name)] = version
            continue
        for inner in named:
            pins |= pins_of(inner)
    return pins


def locked() -> dict[str, tuple[str, list[str]]]:
    """Parse gateway/requirements.lock into {name: (version, hashes)}."""
    entries = {}
    text = (ROOT / LOCK).read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        requirement, *options = fields
        assert PIN.fullmatch(requirement), f"{requirement!r} in {LOCK} is not name==version"
        assert all(option.startswith("--hash=") for option in options), line
        name, _, version = requirement.partition("==")
        entries[canonical(name)] = (version, [option.removeprefix("--hash=") for option in options])
    return entries


def third_party_imports() -> dict[str, set[str]]:
    """Return {top-level module: files importing it} for what the code imports from outside."""
    files = [
        path
        for source in SOURCES
        for path in ((ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else [ROOT / source])
    ]
    own = {path.stem for path in files} | {Path(source).stem for source in SOURCES}
    imports: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    imports.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return imports


def distributions_of(module: str) -> set[str]:
    """Return the installed distributions that provide a top-level module."""
    return {canonical(name) for name in packages_distributions().get(module, [])}


def test_every_requirement_is_an_exact_pin_or_one_of_the_project_extras() -> None:
    for extra, requirements in EXTRAS.items():
        for requirement in requirements:
            named = project_extras_named(requirement)
            if named is None:
                assert PIN.fullmatch(requirement), f"{extra}: {requirement!r} is not name==version"
            else:
                assert set(named) <= EXTRAS.keys() - {extra}, f"{extra}: {requirement!r}"
    assert not PROJECT["dependencies"], "every dependency belongs to an extra"


def test_a_package_has_one_version_in_every_extra() -> None:
    versions: dict[str, set[str]] = {}
    for extra in EXTRAS:
        for name, version in pins_of(extra).items():
            versions.setdefault(name, set()).add(version)
    assert {name: pinned for name, pinned in versions.items() if len(pinned) > 1} == {}


def test_requirement_files_are_written_from_their_extras() -> None:
    for name, extra in REQUIREMENT_FILES.items():
        assert (ROOT / name).read_text(encoding="utf-8") == render_requirements(extra), (
            f"{name} is out of step with pyproject.toml: run `make lock`"
        )


def test_every_imported_package_is_pinned() -> None:
    pinned = {name for extra in EXTRAS for name in pins_of(extra)}
    unpinned = {
        module: sorted(files)
        for module, files in third_party_imports().items()
        if not distributions_of(module) & pinned
    }
    assert unpinned == {}, "imported, but no extra of pyproject.toml pins the package"


def test_the_gateway_imports_only_what_the_embedded_extra_pins() -> None:
    embedded = set(pins_of("embedded"))
    imports = {
        module
        for module, files in third_party_imports().items()
        if any(file.startswith("gateway/") for file in files)
    }
    missing = {
        module
        for module in imports - GATEWAY_OPTIONAL_IMPORTS
        if not distributions_of(module) & embedded
    }
    assert missing == set(), "the gateway imports them, and the embedded extra does not pin them"
    assert imports >= GATEWAY_OPTIONAL_IMPORTS, "no longer imported: drop it from the exceptions"


def test_the_embedded_extra_is_the_gateway_and_litert_without_tensorflow() -> None:
    embedded = pins_of("embedded")
    assert embedded.items() >= pins_of("gateway").items()
    assert "ai-edge-litert" in embedded
    assert [name for name in embedded if TENSORFLOW_FAMILY.match(name)] == []


def test_the_lock_pins_the_gateway_extra_as_pyproject_does() -> None:
    entries = locked()
    for name, version in pins_of(LOCKED_EXTRA).items():
        assert name in entries, f"{LOCK} lacks {name}: run `make lock`"
        assert entries[name][0] == version, f"{LOCK} pins {name} differently: run `make lock`"


def test_every_locked_package_is_hashed() -> None:
    for name, (_, hashes) in locked().items():
        assert hashes, f"{name} has no hash: pip --require-hashes would refuse the whole lock"
        assert all(HASH.fullmatch(digest) for digest in hashes), name


def test_the_gateway_image_installs_neither_tensorflow_nor_litert() -> None:
    names = locked().keys()
    assert [name for name in names if TENSORFLOW_FAMILY.match(name)] == []
    assert "ai-edge-litert" not in names


def test_the_lock_is_resolved_for_the_image_python() -> None:
    base = (ROOT / "gateway" / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"^FROM python:(\d+\.\d+)\.", base, re.MULTILINE)
    assert match, "the gateway image is no longer built on python:X.Y.Z"
    assert match.group(1) == IMAGE_PYTHON


@pytest.mark.slow
def test_make_lock_reproduces_the_lock(tmp_path: Path) -> None:
    fresh = tmp_path / "requirements.lock"
    shutil.copyfile(ROOT / LOCK, fresh)  # as `make lock` does, it keeps the versions pinned
    compile_lock(fresh)
    assert fresh.read_text(encoding="utf-8") == (ROOT / LOCK).read_text(encoding="utf-8"), (
        f"{LOCK} is not what `make lock` writes from pyproject.toml: run it"
    )

"""README.md names every setting, endpoint and Prometheus series of the gateway; its links hold.

A setting added to `gateway.settings.Settings`, a path to `gateway.paths` or a series
to `gateway.metrics` without a word in the README is invisible to operators; a row
left for something removed misleads them. Links between README.md and docs/ are
checked too, anchors included, since a renamed heading breaks them silently.
"""

import re
from pathlib import Path

from prometheus_client import Counter
from prometheus_client.metrics import MetricWrapperBase

from gateway import metrics, paths
from gateway.settings import Settings
from processes import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
SETTINGS_HEADER = "| variable | default | meaning |"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def section(text: str, heading: str) -> str:
    """The lines under `heading` up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    found: list[str] = []
    for line in lines[start:]:
        marks = len(line) - len(line.lstrip("#"))
        if 0 < marks <= level and line[marks:].startswith(" "):
            break
        found.append(line)
    return "\n".join(found)


def readme_settings() -> set[str]:
    """Every variable named in the first column of the README's settings table."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(SETTINGS_HEADER) + 2  # past the header and the |---| line
    names: set[str] = set()
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        first_cell = line.strip("|").split("|", 1)[0]
        names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def test_the_settings_table_lists_every_setting_and_nothing_else() -> None:
    in_code = {name.upper() for name in Settings.model_fields}
    in_readme = readme_settings()
    assert {"MODEL_CONFIG_FILE", "LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= in_code
    assert {"undocumented": in_code - in_readme, "stale": in_readme - in_code} == {
        "undocumented": set(),
        "stale": set(),
    }


def test_every_path_the_gateway_answers_on_is_in_the_api_section() -> None:
    api = section(README.read_text(encoding="utf-8"), "## API")
    served = [v for name, v in vars(paths).items() if name.isupper() and isinstance(v, str)]
    assert "/models" in served
    assert "/admin/routing" in served
    missing = [
        path
        for path in served
        if not any(f"`{method}{path}`" in api for method in ("GET ", "POST ", "PUT ", ""))
    ]
    assert missing == []


def exposed_names() -> list[str]:
    """Each series of gateway/metrics.py as Prometheus shows it (counters gain `_total`)."""
    names = []
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name
            names.append(f"{name}_total" if isinstance(value, Counter) else name)
    return names


def test_every_prometheus_series_is_named_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    names = exposed_names()
    assert "gateway_golden_check_passed" in names
    assert "gateway_predictions_total" in names
    assert [name for name in names if f"`{name}" not in readme] == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    found = set()
    fenced = False
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.add(slug(line.lstrip("#")))
    return found


def test_slug_follows_github() -> None:
    heading = "### `GET /health` (= `GET /health/ready`) and `GET /health/live`"
    assert slug(heading.lstrip("#")) == "get-health--get-healthready-and-get-healthlive"
    assert slug(" 6. Rolling out a version, step by step") == "6-rolling-out-a-version-step-by-step"


def test_links_between_the_readme_and_the_docs_resolve() -> None:
    broken = []
    for document in [README, *DOCS]:
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a URL: not this repository's to check
            file_part, _, anchor = target.partition("#")
            linked = (document.parent / file_part).resolve() if file_part else document
            if not linked.exists():
                broken.append(f"{document.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{document.name}: {target} (no such heading)")
    assert broken == []

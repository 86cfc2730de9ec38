"""The GitHub workflows: valid, read-only, pinned, and naming only what the repository has.

unit.yml lints and runs test/unit; stack.yml exports both models, starts the
compose stack and runs test/stack against it. Neither can run here (no Docker,
no GitHub), so what is checked is what can be without them: the workflow
schema (check-jsonschema's vendored copy, so offline), the shape of a safe
workflow, the order of the stack's steps (suite after `--wait`, logs on
failure, teardown always), that every make target, requirement file, script
and test path a workflow names exists, and that test/stack collects with
TensorFlow out of reach, as on a runner that installed only its requirements.
"""

import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from modelexport.options import default_model_name
from processes import ROOT
from test_deployment_files import GATEWAY_PORT, run_tool

WORKFLOWS = ROOT / ".github" / "workflows"
STACK = WORKFLOWS / "stack.yml"
UNIT = WORKFLOWS / "unit.yml"
EVERY_WORKFLOW = sorted(WORKFLOWS.glob("*.y*ml"))
MAKEFILE = ROOT / "Makefile"
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w.-]+@v\d+$")
# What a run script names in the repository: `make TARGET`, `-r FILE`, `python FILE.py`,
# `pytest PATH` and compose's `-f FILE`.
MAKE_TARGET = re.compile(r"\bmake ([\w-]+)")
NAMED_PATH = re.compile(r"(?:-r|python|pytest|-f) ((?:[\w-]+/)*[\w.-]+\.(?:txt|py|yml)|test/\w+)")
# Modules a runner without the export extra lacks: importing one fails, as it would there.
NO_TENSORFLOW = (
    "import sys\n"
    "for name in ('tensorflow', 'tensorflow_serving', 'keras', 'tf_keras', 'tensorflow_hub'):\n"
    "    sys.modules[name] = None\n"
    "import pytest\n"
    "sys.exit(pytest.main(sys.argv[1:]))\n"
)


COLLECT_ONLY = ("--collect-only", "-q", "-p", "no:cacheprovider")


def load(path: Path) -> dict[str, Any]:
    """A workflow, read as YAML 1.2 (so the `on` key stays a string)."""
    document: dict[str, Any] = YAML(typ="safe", pure=True).load(path)
    return document


def only_job(workflow: dict[str, Any]) -> dict[str, Any]:
    (job,) = workflow["jobs"].values()
    assert isinstance(job, dict)
    return job


def scripts(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def setup_python(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The `with:` of each actions/setup-python step of `job`."""
    return [step["with"] for step in job["steps"] if "setup-python" in step.get("uses", "")]


def step_index(job: dict[str, Any], needle: str) -> int:
    """The position of the one step whose run script contains `needle`."""
    (index,) = [i for i, step in enumerate(job["steps"]) if needle in step.get("run", "")]
    return index


def test_both_workflows_are_checked() -> None:
    assert {STACK, UNIT} <= set(EVERY_WORKFLOW)


@pytest.mark.parametrize("workflow", EVERY_WORKFLOW, ids=lambda path: path.name)
def test_workflow_matches_the_github_workflow_schema(workflow: Path) -> None:
    result = run_tool(
        "check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(workflow)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_schema_ships_with_check_jsonschema() -> None:
    # --builtin-schema reads this copy: validation needs no network.
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "github-workflows.json"
    text = vendored.read_text(encoding="utf-8")
    assert '"$schema"' in text
    assert not re.search(r'"\$ref":\s*"https?:', text)


@pytest.mark.parametrize("workflow", EVERY_WORKFLOW, ids=lambda path: path.name)
def test_workflow_is_read_only_pinned_and_bounded(workflow: Path) -> None:
    document = load(workflow)
    assert document["permissions"] == {"contents": "read"}
    assert {"push", "pull_request"} <= set(document["on"])
    for job in document["jobs"].values():
        assert 0 < job["timeout-minutes"] <= 60
        actions = [step["uses"] for step in job["steps"] if "uses" in step]
        assert [a for a in actions if not PINNED_ACTION.match(a)] == []
        for python in setup_python(job):
            assert (python["python-version"], python["cache"]) == ("3.11", "pip")


@pytest.mark.parametrize("workflow", EVERY_WORKFLOW, ids=lambda path: path.name)
def test_workflow_names_only_what_the_repository_has(workflow: Path) -> None:
    makefile = MAKEFILE.read_text(encoding="utf-8")
    for job in load(workflow)["jobs"].values():
        run = scripts(job)
        targets = MAKE_TARGET.findall(run)
        assert [t for t in targets if not re.search(rf"^{t}:", makefile, re.MULTILINE)] == []
        paths = NAMED_PATH.findall(run)
        for python in setup_python(job):
            paths += python.get("cache-dependency-path", "").split()
        assert [p for p in paths if not (ROOT / p).exists()] == []


def test_the_path_check_finds_what_each_workflow_names() -> None:
    # So the check above cannot pass by recognising nothing.
    assert MAKE_TARGET.findall(scripts(only_job(load(UNIT)))) == ["venv", "lint"]
    assert set(NAMED_PATH.findall(scripts(only_job(load(STACK))))) == {
        "requirements-export.txt",
        "requirements-dev.txt",
        "gateway/requirements.txt",
        "export_model.py",
        "test/stack",
        "docker-compose.yml",
        "docker-compose.debug.yml",
    }


def test_stack_workflow_serves_the_model_it_exports() -> None:
    job = only_job(load(STACK))
    env = job["env"]
    run = scripts(job)
    # compose serves ${MODEL_NAME:-mobilenet}: the job names the folder the export writes.
    assert env["MODEL_NAME"] == default_model_name(env["MODEL_SOURCE"])
    assert 'export_model.py --source "$MODEL_SOURCE" --model-name "$MODEL_NAME"' in run
    assert "docker compose up --build --detach --wait" in run


def test_stack_workflow_runs_the_suite_against_the_started_stack() -> None:
    job = only_job(load(STACK))
    steps = job["steps"]
    suite = step_index(job, "pytest test/stack")
    assert steps[suite]["env"]["STACK_GATEWAY_URL"] == f"http://127.0.0.1:{GATEWAY_PORT}"
    assert step_index(job, "docker compose up --build --detach --wait") < suite
    assert step_index(job, "export_model.py") < suite
    # The suite's requirements are installed before it runs.
    assert step_index(job, "-r requirements-dev.txt") < suite
    # One key for both sides: compose hands API_KEYS to the gateway, the suite sends STACK_API_KEY.
    keys = step_index(job, "STACK_API_KEY")
    assert keys < step_index(job, "docker compose up --build")
    assert 'echo "API_KEYS=$key"; echo "STACK_API_KEY=$key"' in steps[keys]["run"]


def test_stack_workflow_keeps_the_logs_of_a_failure_and_always_tears_down() -> None:
    job = only_job(load(STACK))
    steps = job["steps"]
    logs = step_index(job, "docker compose logs")
    assert steps[logs]["if"] == "failure()"
    assert logs > step_index(job, "pytest test/stack")
    assert steps[-1]["if"] == "always()"
    assert steps[-1]["run"].startswith("docker compose down")


def test_unit_workflow_lints_and_runs_the_unit_layer() -> None:
    job = only_job(load(UNIT))
    run = scripts(job)
    assert step_index(job, "make venv") < step_index(job, "make lint")
    assert step_index(job, "make lint") < step_index(job, "pytest test/unit")
    # make's own virtual environment, so the pins are the ones `make test` uses.
    assert ".venv/bin/python -m pytest test/unit" in run


def test_stack_suite_collects_without_tensorflow() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, *COLLECT_ONLY, "test/stack"],
        cwd=ROOT,
        env={**os.environ, "STACK_GATEWAY_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "test/stack/test_stack_contract.py::test_predict" in done.stdout

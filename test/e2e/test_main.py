"""`python -m gateway` refuses a bad configuration clearly, without echoing secrets."""

import subprocess
import sys

from processes import ROOT, child_env

SECRET = "k3y-that-must-never-be-logged"


def start_with(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway"],
        cwd=ROOT,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_whole_model_check_names_the_problem_but_not_the_api_keys() -> None:
    done = start_with(API_KEYS=SECRET, TF_SERVING_URL="ftp://tf-serving:8501/v1/models/m:predict")
    assert done.returncode != 0
    assert "TF_SERVING_URL must be an http(s) URL" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_a_field_error_names_the_setting_but_not_its_value() -> None:
    done = start_with(API_KEYS=SECRET, PORT="not-a-port")
    assert done.returncode != 0
    assert "PORT:" in done.stderr
    assert "not-a-port" not in done.stderr
    assert SECRET not in done.stderr

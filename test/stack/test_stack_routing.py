"""Both models of deploy/tfserving/models.config, asked by name, version and label.

What the stack serves is read from that file (the one compose mounts for TF
Serving and the gateway), so the expectations follow it: each model, its
versions and the version each label names.
"""

import httpx

from routing_helpers import ServedModel, predict


def served_label(model: ServedModel, version: int) -> list[str]:
    return sorted(label for label, labelled in model.labels.items() if labelled == version)


def test_models_lists_every_model_version_and_label(
    stack: httpx.Client, compose_models: tuple[ServedModel, ...], default_model: str
) -> None:
    body = stack.get("/models").json()
    assert body["models_from"] == "MODEL_CONFIG_FILE"
    assert [model["name"] for model in body["models"]] == [m.name for m in compose_models]
    listed = {model["name"]: model for model in body["models"]}
    assert listed[default_model]["default"] is True
    for model in compose_models:
        entry = listed[model.name]
        assert entry["labels"] == dict(model.labels)
        versions = {v["version"]: v for v in entry["versions"]}
        assert sorted(versions) == sorted(model.versions)
        for number, version in versions.items():
            assert version["state"] == "AVAILABLE"
            assert version["labels"] == served_label(model, number)
            assert version["weights"] in {"trained", "untrained"}
            assert version["signature"]["outputs"] == {
                "probabilities": {"dtype": "float32", "shape": [-1, 1001]}
            }


def test_a_label_answers_with_the_version_it_names(
    stack: httpx.Client, cat_jpeg: bytes, compose_models: tuple[ServedModel, ...]
) -> None:
    for model in compose_models:
        for label, version in model.labels.items():
            response = predict(stack, cat_jpeg, model=model.name, label=label)
            assert response.status_code == 200, response.text
            body = response.json()
            assert response.headers["X-Model-Version"] == body["model"]["version"] == str(version)
            assert (body["model"]["name"], body["model"]["label"]) == (model.name, label)
            assert body["routing"]["chosen_by"] == "request"


def test_a_version_answers_itself(
    stack: httpx.Client, cat_jpeg: bytes, compose_models: tuple[ServedModel, ...]
) -> None:
    for model in compose_models:
        for version in model.versions:
            response = predict(stack, cat_jpeg, model=model.name, version=version)
            assert response.status_code == 200, response.text
            body = response.json()
            assert response.headers["X-Model-Version"] == body["model"]["version"] == str(version)
            assert body["model"]["name"] == model.name
            assert "label" not in body["model"]
            assert body["routing"] == {
                "chosen_by": "request",
                "target": f"{model.name} version {version}",
            }


def test_naming_nothing_gets_the_default_models_stable_version(
    stack: httpx.Client,
    cat_jpeg: bytes,
    compose_models: tuple[ServedModel, ...],
    default_model: str,
) -> None:
    (model,) = [m for m in compose_models if m.name == default_model]
    response = predict(stack, cat_jpeg)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["name"] == default_model
    assert body["model"]["label"] == "stable"
    assert body["model"]["version"] == str(model.labels["stable"])
    # Neither stack starts with a routing file, so no split chooses.
    assert body["routing"]["chosen_by"] == "default"

"""The embedded backend's TF Serving-shaped status and metadata documents."""

from gateway.backend import ModelSignature
from gateway.serving_documents import metadata_document, status_document


def test_an_available_version_reads_as_tf_serving_writes_it() -> None:
    assert status_document(3, "AVAILABLE") == {
        "model_version_status": [
            {
                "version": "3",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def test_a_failed_load_carries_its_error() -> None:
    (entry,) = status_document(2, "END", "version 2 could not be loaded")["model_version_status"]
    assert entry["state"] == "END"
    assert entry["status"] == {
        "error_code": "UNKNOWN",
        "error_message": "version 2 could not be loaded",
    }


def test_no_version_yet_is_an_empty_list() -> None:
    assert status_document(None, "LOADING") == {"model_version_status": []}


def test_metadata_names_the_model_version_and_tensors() -> None:
    signature = ModelSignature(
        version=4,
        input_name="pixels",
        output_name="scores",
        image_size=(256, 192),
        num_classes=10,
    )
    document = metadata_document("flowers", signature)
    assert document["model_spec"] == {"name": "flowers", "signature_name": "", "version": "4"}
    definition = document["metadata"]["signature_def"]["signature_def"]["serving_default"]
    pixels = definition["inputs"]["pixels"]
    assert pixels["dtype"] == "DT_UINT8"
    assert [d["size"] for d in pixels["tensor_shape"]["dim"]] == ["-1", "192", "256", "3"]
    scores = definition["outputs"]["scores"]
    assert [d["size"] for d in scores["tensor_shape"]["dim"]] == ["-1", "10"]

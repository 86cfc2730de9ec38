"""How the API document shows the prediction endpoints' bodies.

The handlers read their bodies themselves (a raw image beside the form for
`POST /predict`; a file count checked against a runtime setting for the batch),
so FastAPI cannot derive these from the parameters; they are written out here,
once, and merged into each operation with `openapi_extra`.
"""

from typing import Any

IMAGE_FORMATS = "JPEG, PNG, GIF, BMP, WebP or TIFF"
_BINARY = {"type": "string", "format": "binary", "minLength": 1}


def _form(file_field: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": {
            "type": "object",
            "properties": {"file": file_field},
            "required": ["file"],
        }
    }


# POST /predict: the multipart form of the original API, or the image as the whole body.
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": _form({**_BINARY, "description": f"The image: {IMAGE_FORMATS}"}),
            "image/*": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}
# POST /predict/batch: the `file` field repeated, one image each.
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": _form(
                {
                    "type": "array",
                    "items": _BINARY,
                    "minItems": 1,
                    "description": "the images, one `file` field each (MAX_BATCH_FILES)",
                }
            )
        },
    }
}

"""How the tests call the gateway: the same requests a user's curl makes."""

import httpx


def post_image(
    url: str, data: bytes, filename: str = "image.bin", **params: int | str
) -> httpx.Response:
    """POST `data` to /predict as the multipart field `file`."""
    return httpx.post(
        f"{url}/predict", files={"file": (filename, data)}, params=params, timeout=60.0
    )

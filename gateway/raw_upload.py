"""An image sent as the whole request body (`curl --data-binary @cat.jpg -H "Content-Type: ..."`).

KServe's, Triton's and MLServer's users ask for this because it is what every
HTTP client sends most simply, and it costs the gateway less: no multipart
parser walking the body for boundaries, no spooled temporary file, no form
object to build and close. The body is read as it streams in, bounded by
MAX_UPLOAD_BYTES (UploadGuard, gateway/limits.py, has already refused a larger
Content-Length and bounds the time).

Only image types and application/octet-stream count as raw: anything else
without a multipart form is still answered as a missing `file` field, as before.
The file's name, which multipart carries in its part header, may come in a
`Content-Disposition` request header; without one the answer's `filename` is "".
"""

from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from gateway.errors import PayloadTooLarge

OCTET_STREAM = b"application/octet-stream"


def is_raw_upload(request: Request) -> bool:
    """Whether the body itself is the image (by its Content-Type)."""
    media_type, _ = parse_options_header(request.headers.get("content-type", ""))
    return media_type.startswith(b"image/") or media_type == OCTET_STREAM


async def read_raw_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge.over(max_bytes)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def raw_filename(request: Request) -> str:
    """The name a `Content-Disposition: ...; filename="cat.jpg"` header gives, else ""."""
    header = request.headers.get("content-disposition")
    if not header:
        return ""
    _, options = parse_options_header(header)
    name = options.get(b"filename", b"")
    # Only the last path component: a client's directory names are none of ours.
    return name.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]

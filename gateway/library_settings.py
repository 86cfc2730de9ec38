"""Process-wide settings of Pillow and OpenCV that the image pipeline relies on.

Applied by a call, never on import: the gateway applies them as it starts
(gateway/app.py's lifespan), and so does whatever else runs the pipeline in
its own process (the benchmark, the tests' conftest.py). Importing a
pipeline module changes nothing for the process that imports it.
"""

import cv2
from PIL import Image, PngImagePlugin

# PNG text chunks are decompressed as the header is read, before any budget
# can weigh them: Pillow's 64 MiB allowance let a 60 KB file take 60 MB.
# Real metadata (XMP, EXIF as text) is far smaller.
PNG_TEXT_MEMORY_BYTES = 4 * 1024 * 1024


def apply_library_settings() -> None:
    """Set the library-wide limits and thread counts the pipeline is written for."""
    # The gateway enforces its own pixel cap from the header (TooManyPixels), so
    # Pillow's process-wide bomb check must not answer first, in its own words.
    Image.MAX_IMAGE_PIXELS = None
    PngImagePlugin.MAX_TEXT_MEMORY = PNG_TEXT_MEMORY_BYTES
    # The gateway runs its own sized thread pools; OpenCV must not add its own.
    cv2.setNumThreads(1)

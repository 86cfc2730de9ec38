"""What the benchmark borrows from the end-to-end tests: starting processes, reading their RSS.

test/processes.py and test/peak_rss.py stay the one copy of each; test/ is
not a package, so its folder is put on sys.path here, and only here.
"""

import sys

from bench.images import CAT_JPEG

_TEST_DIR = CAT_JPEG.parent
if str(_TEST_DIR) not in sys.path:
    sys.path.insert(0, str(_TEST_DIR))

from peak_rss import rss_bytes  # noqa: E402  (test/ is on sys.path only from here)
from processes import (  # noqa: E402
    ROOT,
    Process,
    answers,
    child_env,
    free_port,
    gateway,
    tfserving_double,
)

__all__ = [
    "ROOT",
    "Process",
    "answers",
    "child_env",
    "free_port",
    "gateway",
    "rss_bytes",
    "tfserving_double",
]

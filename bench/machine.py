"""What the numbers were measured on: CPU, cores, memory, interpreter and library versions."""

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

_PACKAGES = {
    "TensorFlow": "tensorflow",
    "LiteRT": "ai-edge-litert",
    "Pillow": "pillow",
    "OpenCV": "opencv-python-headless",
    "NumPy": "numpy",
    "uvicorn": "uvicorn",
}


def describe_machine() -> dict[str, Any]:
    """A JSON-ready description of this machine and its software."""
    versions = {}
    for name, package in _PACKAGES.items():
        try:
            versions[name] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "physical_cores": psutil.cpu_count(logical=False) or 0,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "versions": versions,
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"

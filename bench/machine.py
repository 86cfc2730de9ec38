"""What the numbers were measured on: CPU, cores, memory, interpreter and library versions."""

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

# The CPU features int8 kernels speed up with (x86 VNNI and AMX, Arm's dot-product and
# int8 matrix multiply): with none of them, an int8 model ran no faster than float32 here
# (docs/int8.md), so a result says which its machine had.
INT8_INSTRUCTIONS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")

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
        "int8_instructions": int8_instructions(_cpuinfo()),
        "cores": os.cpu_count() or 0,
        "physical_cores": psutil.cpu_count(logical=False) or 0,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "versions": versions,
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def int8_instructions(cpuinfo: str) -> list[str]:
    """Which of INT8_INSTRUCTIONS the first CPU's flags (x86) or features (Arm) list."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            present = set(value.split())
            return [flag for flag in INT8_INSTRUCTIONS if flag in present]
    return []


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    text = _cpuinfo()
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"

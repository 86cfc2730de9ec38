"""bench/floor.py: its table turns measured rows into gateway CPU per request."""

from typing import Any

from bench.floor import render


def row(image: str, encoding: str, per_second: float, cores: float, loop: float) -> dict[str, Any]:
    return {
        "image": image,
        "image_bytes": 19073,
        "encoding": encoding,
        "concurrency": 16,
        "per_second": per_second,
        "cores": {"gateway": cores, "double": 1.7},
        "main_thread_cores": {"gateway": loop},
    }


def test_cpu_per_request_is_the_gateways_cores_over_its_rate() -> None:
    table = render([row("224x224 raw body", "raw", 100.0, 0.2, 0.13)]).splitlines()
    assert table[0].startswith("| upload | bytes | body |")
    # 0.2 cores at 100 requests/s: 2 ms a request, 1.3 of them on the event loop; the
    # double's cores are not the gateway's.
    assert table[2] == "| 224x224 | 19,073 | raw | 16 | 100.0 | 2.00 | 1.30 |"

"""README's Errors table and `gateway.errors` name the same codes with the same statuses."""

import re

from gateway import errors
from processes import ROOT

TABLE_HEADER = "| input or fault | status | code |"


def readme_error_table() -> dict[str, set[int]]:
    """Every code the README's Errors table lists, with the statuses it gives it."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(TABLE_HEADER) + 2  # past the header and the |---| line
    table: dict[str, set[int]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        _, status_cell, code_cell = line.strip("|").rsplit("|", 2)
        statuses = [int(status) for status in re.findall(r"\b\d{3}\b", status_cell)]
        codes = re.findall(r"`([a-z_]+)`", code_cell)
        assert statuses, f"no status in README row {line!r}"
        assert codes, f"no code in README row {line!r}"
        if len(statuses) == 1:
            statuses *= len(codes)
        assert len(statuses) == len(codes), f"statuses and codes do not pair up in {line!r}"
        for status, code in zip(statuses, codes, strict=True):
            table.setdefault(code, set()).add(status)
    return table


def gateway_error_classes() -> list[type[errors.GatewayError]]:
    """`GatewayError` and every subclass, however deep."""
    found: list[type[errors.GatewayError]] = []
    pending = [errors.GatewayError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_the_table_is_found_and_not_trivially_small() -> None:
    table = readme_error_table()
    assert len(table) >= 10
    assert table["not_an_image"] == {415}
    assert table["method_not_allowed"] == {405}


def test_every_code_in_the_readme_is_raised_by_the_gateway_with_that_status() -> None:
    statuses_in_code: dict[str, set[int]] = {}
    for cls in gateway_error_classes():
        statuses_in_code.setdefault(cls.code, set()).add(cls.status)
    mismatches = {
        code: {"README": statuses, "gateway.errors": statuses_in_code.get(code, set())}
        for code, statuses in readme_error_table().items()
        if statuses_in_code.get(code) != statuses
    }
    assert mismatches == {}


def test_every_gateway_error_code_is_in_the_readme() -> None:
    table = readme_error_table()
    undocumented = {
        cls.__name__: (cls.status, cls.code)
        for cls in gateway_error_classes()
        if cls.status not in table.get(cls.code, set())
    }
    assert undocumented == {}

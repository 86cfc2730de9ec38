"""The routing file: edits seen within a look, a broken file never breaks routing, writes atomic."""

import logging
import os
import stat
from pathlib import Path

import pytest

from gateway.routing_file import MAX_FILE_BYTES, RoutingFile, RoutingFileError
from gateway.target import Target
from gateway.traffic_split import RoutingConfig, choose, validate_routing

STABLE = '{"models": {"mobilenet": {"split": [{"label": "stable", "weight": 1}]}}}'
CANARY = '{"models": {"mobilenet": {"split": [{"label": "canary", "weight": 1}]}}}'


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def routed_to(routing: RoutingFile) -> Target | None:
    split = routing.current().split_for("mobilenet")
    return None if split is None else choose(split, "client")


def stable() -> Target:
    return Target("mobilenet", label="stable")


def canary() -> Target:
    return Target("mobilenet", label="canary")


def test_without_a_file_every_model_has_its_default_and_replace_is_in_memory() -> None:
    routing = RoutingFile(None)
    assert routing.current() == RoutingConfig()
    assert routing.error is None
    config = validate_routing({"models": {"mobilenet": {"split": [{"version": 2, "weight": 1}]}}})
    routing.replace(config)
    assert routing.current() is config


def test_the_file_is_read_at_start(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(STABLE)
    routing = RoutingFile(path)
    assert routed_to(routing) == stable()
    assert routing.error is None


def test_an_edit_is_seen_at_the_first_look_after_check_seconds(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(STABLE)
    clock = Clock()
    routing = RoutingFile(path, check_seconds=1.0, clock=clock)
    path.write_text(CANARY)
    clock.now = 0.5
    assert routed_to(routing) == stable()  # not looked at yet: one clock read per request
    clock.now = 1.0
    assert routed_to(routing) == canary()


def test_an_in_place_rewrite_of_the_same_size_is_seen(tmp_path: Path) -> None:
    # Same size and inode: only the times (or, on a coarse clock, the "recently modified"
    # rule) tell the files apart.
    path = tmp_path / "routing.json"
    first, second = STABLE.replace("stable", "canar1"), STABLE.replace("stable", "canar2")
    path.write_text(first)
    routing = RoutingFile(path, check_seconds=0.0)
    with path.open("r+") as file:
        file.write(second)
    split = routing.current().split_for("mobilenet")
    assert split is not None
    assert split.targets == (Target("mobilenet", label="canar2"),)


def test_an_atomic_replace_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(STABLE)
    routing = RoutingFile(path, check_seconds=0.0)
    swap = tmp_path / "next.json"
    swap.write_text(CANARY)
    os.replace(swap, path)
    assert routed_to(routing) == canary()


def test_a_broken_file_keeps_the_last_good_routing_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routing.json"
    path.write_text(STABLE)
    routing = RoutingFile(path, check_seconds=0.0)
    path.write_text(STABLE.replace('"weight"', '"wieght"'))
    with caplog.at_level(logging.WARNING, logger="gateway.routing_file"):
        assert routed_to(routing) == stable()
        assert routed_to(routing) == stable()
    assert routing.error is not None
    assert f"routing file {path.name}:" in routing.error
    assert str(path.parent) not in routing.error  # clients read it: no host path
    assert "unknown key 'wieght' at models.mobilenet.split[0]" in routing.error
    assert "Traceback" not in routing.error
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1  # once per problem, not once per look

    path.write_text(CANARY)
    assert routed_to(routing) == canary()
    assert routing.error is None


def test_a_broken_file_at_start_leaves_every_model_on_its_default(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text('{"models": ')
    routing = RoutingFile(path)
    assert routing.current() == RoutingConfig()
    assert routing.error is not None
    assert "not valid JSON" in routing.error


def test_a_missing_file_is_an_error_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    routing = RoutingFile(path, check_seconds=0.0)
    assert routing.error == f"routing file {path.name}: cannot be read (No such file or directory)"
    path.write_text(STABLE)
    assert routed_to(routing) == stable()
    assert routing.error is None
    path.unlink()
    assert routed_to(routing) == stable()  # the last good routing stays
    assert routing.error is not None


def test_a_file_too_large_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(STABLE)
    routing = RoutingFile(path, check_seconds=0.0)
    path.write_bytes(b" " * MAX_FILE_BYTES + STABLE.encode())
    assert routed_to(routing) == stable()
    assert routing.error == f"routing file {path.name}: larger than {MAX_FILE_BYTES} bytes"


def test_replace_writes_the_file_atomically_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(STABLE)
    path.chmod(0o640)
    inode = path.stat().st_ino
    routing = RoutingFile(path, check_seconds=0.0)
    config = validate_routing(
        {"models": {"mobilenet": {"split": [{"label": "canary", "weight": 1}]}}}
    )
    routing.replace(config)
    assert routed_to(routing) == canary()
    assert RoutingFile(path).current() == config  # what a restart would read
    assert path.stat().st_ino != inode  # renamed over, never rewritten in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routing.json"]  # no temporary left


def test_replace_clears_the_error_of_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text("not json")
    routing = RoutingFile(path, check_seconds=0.0)
    assert routing.error is not None
    routing.replace(validate_routing({}))
    assert routing.error is None
    assert routing.current() == RoutingConfig()
    assert path.read_text().strip() == '{\n  "models": {}\n}'


def test_an_edit_after_replace_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    routing = RoutingFile(path, check_seconds=0.0)
    routing.replace(validate_routing({}))
    path.write_text(CANARY)
    assert routed_to(routing) == canary()


def test_a_failed_write_changes_nothing_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "routing.json"
    routing = RoutingFile(path, check_seconds=0.0)
    before = routing.current()
    with pytest.raises(RoutingFileError) as caught:
        routing.replace(validate_routing({"models": {"mobilenet": {}}}))
    assert str(caught.value) == f"cannot write routing file {path.name}: No such file or directory"
    assert routing.current() is before

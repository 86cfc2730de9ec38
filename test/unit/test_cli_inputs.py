"""gateway/cli/inputs.py: files, folders and glob patterns become the files to send, or exit 2."""

import os
import sys
from pathlib import Path

import httpx
import pytest

from gateway.cli.__main__ import main
from gateway.cli.inputs import InputError, expand_inputs, read_regular_file

# FIFOs, /dev/zero and symlinks as POSIX has them.
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file kinds")


@pytest.fixture
def album(tmp_path: Path) -> Path:
    """photos/ with images at two depths, upper-case extensions and files that are not images."""
    photos = tmp_path / "photos"
    (photos / "2024" / "summer").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", "notes.txt", "2024/c.webp", "2024/summer/d.TIFF", "2024/e.gif"):
        (photos / name).write_bytes(b"x")
    (photos / "2024" / "folder.jpg").mkdir()  # a folder named like an image is not a file
    return photos


def test_a_folder_gives_its_images_at_any_depth_sorted_and_nothing_else(album: Path) -> None:
    assert [path.relative_to(album).as_posix() for path in expand_inputs([str(album)])] == [
        "2024/c.webp",
        "2024/e.gif",
        "2024/summer/d.TIFF",
        "a.PNG",
        "b.jpg",
    ]


def test_a_file_is_taken_as_given_whatever_its_extension(album: Path) -> None:
    notes = album / "notes.txt"
    assert expand_inputs([str(notes), str(album / "b.jpg")]) == [notes, album / "b.jpg"]


def test_a_quoted_glob_is_expanded_sorted_and_its_folders_are_walked(album: Path) -> None:
    assert expand_inputs([f"{album}/*.jpg"]) == [album / "b.jpg"]
    walked = expand_inputs([f"{album}/20*"])
    assert [path.name for path in walked] == ["c.webp", "e.gif", "d.TIFF"]


def test_inputs_keep_their_order_and_a_file_named_twice_is_sent_once(album: Path) -> None:
    files = expand_inputs([str(album / "b.jpg"), str(album / "2024"), f"{album}/*.jpg"])
    assert [path.name for path in files] == ["b.jpg", "c.webp", "e.gif", "d.TIFF"]


def test_every_argument_that_matches_nothing_is_named(album: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(InputError) as raised:
        expand_inputs([str(album), str(tmp_path / "missing.jpg"), f"{album}/*.bmp", str(empty)])
    assert raised.value.messages == [
        f"{tmp_path / 'missing.jpg'}: no such file or folder",
        f"{album}/*.bmp: the pattern matches no file",
        f"{empty}: the folder holds no image (bmp gif jpeg jpg png tif tiff webp)",
    ]


def test_a_missing_input_exits_2_before_any_request(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No transport given and no gateway listening: reaching the network would exit 1, not 2.
    code = main(
        ["predict", str(album / "b.jpg"), str(album / "nope.png"), "--url", "http://127.0.0.1:9"]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == f"mlpipe predict: error: {album / 'nope.png'}: no such file or folder\n"


def test_a_symlink_loop_under_a_double_star_pattern_sends_each_file_once(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "a.jpg").write_bytes(b"x")
    (loop / "self").symlink_to(loop, target_is_directory=True)
    assert expand_inputs([f"{loop}/**/*.jpg"]) == [loop / "a.jpg"]


def test_a_file_reached_by_two_paths_is_sent_once_under_the_first(album: Path) -> None:
    alias = album.parent / "alias.jpg"
    alias.symlink_to(album / "b.jpg")
    assert expand_inputs([str(alias), str(album / "b.jpg")]) == [alias]
    assert [path.name for path in expand_inputs([str(album), str(alias)])] == [
        "c.webp",
        "e.gif",
        "d.TIFF",
        "a.PNG",
        "b.jpg",
    ]


@posix_only
def test_what_is_not_a_regular_file_is_named_as_such_and_nothing_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500)

    # Expanding the inputs only looks at the FIFO: opening it would block this test.
    argv = ["predict", str(fifo), "/dev/zero", str(tmp_path / "l1"), "--url", "http://g.test"]
    code = main(argv, transport=httpx.MockTransport(handler))
    assert code == 2
    assert requests == []
    assert capsys.readouterr().err.splitlines() == [
        f"mlpipe predict: error: {fifo}: not a regular file",
        "mlpipe predict: error: /dev/zero: not a regular file",
        f"mlpipe predict: error: {tmp_path / 'l1'}: symlink loop",
    ]


@posix_only
def test_a_fifo_put_where_a_file_was_is_refused_without_waiting_for_a_writer(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        read_regular_file(fifo)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"pixels")
    assert read_regular_file(image) == b"pixels"

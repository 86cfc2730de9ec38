"""A TIFF's first directory, read from the bytes without Pillow.

Pillow builds Python objects for every strip or tile as it opens a TIFF and
cannot say which variant it refused, so the gateway reads the directory
itself: to refuse absurd strip counts before Pillow sees them, to tell a cut
file from an unsupported variant, and to name that variant to the client.
"""

import struct
from dataclasses import dataclass

# Classic TIFF and BigTIFF: offsets (and value counts), number of entries, entry size.
_TIFF_LAYOUTS = {42: ("I", "H", 12), 43: ("Q", "Q", 20)}
# Bytes per value of each TIFF field type (TIFF 6.0 section 2; BigTIFF adds 16-18).
_TIFF_TYPE_BYTES = (
    dict.fromkeys((1, 2, 6, 7), 1)
    | dict.fromkeys((3, 8), 2)
    | dict.fromkeys((4, 9, 11, 13), 4)
    | dict.fromkeys((5, 10, 12, 16, 17, 18), 8)
)
_TIFF_UNSIGNED = {1: "B", 3: "H", 4: "I", 16: "Q"}
# Read in full to say which variant a TIFF is: samples, bits, compression, sample format.
_TIFF_DESCRIPTIVE_TAGS = frozenset({258, 259, 277, 339})
_TIFF_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating point"}


@dataclass(frozen=True)
class TiffDirectory:
    """A TIFF's first directory as it declares itself, read without Pillow."""

    counts: dict[int, int]  # how many values each tag has
    values: dict[int, tuple[int, ...]]  # the descriptive tags' values
    complete: bool  # the directory, and every value it points to, lie within the file


def read_tiff_directory(data: bytes) -> TiffDirectory | None:
    """The first directory of a TIFF or BigTIFF (None for anything else)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    version = struct.unpack_from(f"{order}H", data, 2)[0] if order and len(data) >= 4 else 0
    if version not in _TIFF_LAYOUTS:
        return None
    offset, count, entry_size = _TIFF_LAYOUTS[version]
    width = struct.calcsize(offset)  # of a value kept in its entry, or of its offset
    directory = _unpack_offset(f"{order}{offset}", data, 4 if version == 42 else 8)
    entries = _unpack_offset(f"{order}{count}", data, directory) if directory >= 0 else -1
    if entries < 0:
        return TiffDirectory({}, {}, complete=False)
    first = directory + struct.calcsize(count)
    present = min(entries, (len(data) - first) // entry_size)
    complete = first + entries * entry_size + width <= len(data)  # entries, then next offset
    counts: dict[int, int] = {}
    values: dict[int, tuple[int, ...]] = {}
    for at in range(first, first + present * entry_size, entry_size):
        tag, kind, n = struct.unpack_from(f"{order}HH{offset}", data, at)
        counts[tag] = n
        size = _TIFF_TYPE_BYTES.get(kind, 0) * n
        where = at + 4 + width
        if size > width:
            where = _unpack_offset(f"{order}{offset}", data, where)
        if where + size > len(data):
            complete = False
        elif n and tag in _TIFF_DESCRIPTIVE_TAGS and kind in _TIFF_UNSIGNED:
            values[tag] = struct.unpack_from(f"{order}{n}{_TIFF_UNSIGNED[kind]}", data, where)
    return TiffDirectory(counts, values, complete)


def _unpack_offset(layout: str, data: bytes, at: int) -> int:
    """The unsigned integer at `at`, or -1 when the file ends first."""
    # Checked here: a BigTIFF offset past 2**63 overflows struct (OverflowError).
    if not 0 <= at <= len(data) - struct.calcsize(layout):
        return -1
    return int(struct.unpack_from(layout, data, at)[0])


def describe_tiff_samples(tiff: TiffDirectory) -> str:
    """The variant a TIFF declares, in words: samples per pixel, bits, number kind."""
    samples = tiff.values.get(277, (1,))[0]
    bits = "/".join(dict.fromkeys(str(b) for b in tiff.values.get(258, (1,))))
    sample_format = tiff.values.get(339, (1,))[0]
    kind = _TIFF_SAMPLE_FORMATS.get(sample_format, f"sample format {sample_format}")
    return f"{samples} sample{'s' * (samples != 1)} per pixel, {bits}-bit {kind}"

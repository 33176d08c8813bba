"""VGG19 from torchvision's ``vgg19`` checkpoint (a ``.pth`` state dict) -- read without PyTorch.

torchvision's ``features`` Sequential interleaves conv, ReLU and pool modules, so the convs sit
at ``features.0, 2, 5, 7, 10, ...``: ``vgg_layout.convs`` derives those indices from the block
structure. Weights are already OIHW. Preprocessing is torchvision's (RGB, [0,1], mean/std).

A ``.pth`` is a pickle whose tensors point at raw storages kept beside it -- in a zip archive
(``torch.save`` since 1.6) or appended after the pickle (the legacy format of the published
2017 checkpoints). Both are read here with a restricted unpickler that only rebuilds float
tensors into NumPy arrays, so converting needs neither PyTorch nor arbitrary code execution.
"""

import collections
import io
import pickle
import struct
import zipfile

import vgg_layout

URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
URL_SHA256_PREFIX = "dcbb9e9d"  # torchvision names files by their hash's first 8 hex digits
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
          "LongStorage": "<i8", "IntStorage": "<i4"}


class _StorageType:
    def __init__(self, name):
        if name not in DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type torch.{name}")
        self.dtype = DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *_):
    import numpy as np

    if len(size) == 0:
        return storage[offset:offset + 1].reshape(())
    item = storage.itemsize
    # A view, not a copy: in the legacy format the storage is filled only after unpickling.
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))


def _rebuild_parameter(data, *_):
    return data


class _Unpickler(pickle.Unpickler):
    """Rebuilds tensors from ``load_storage(key, dtype)``; refuses every other global."""

    def __init__(self, f, load_storage):
        super().__init__(f)
        self._load_storage = load_storage
        self._cache = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        _, storage_type, key, _location, numel = pid[:5]
        if key not in self._cache:
            self._cache[key] = self._load_storage(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy storage views: (view key, offset, size)
            _, offset, size = view
            return self._cache[key][offset:offset + size]
        return self._cache[key]


def read_state_dict(path):
    """{name: numpy array} from a ``torch.save``d state dict, zip or legacy format."""
    import numpy as np

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            root = pkl[: -len("data.pkl")]

            def load(key, dtype, numel):
                return np.frombuffer(z.read(f"{root}data/{key}"), dtype=dtype)[:numel]

            state = _Unpickler(io.BytesIO(z.read(pkl)), load).load()
            return {k: np.array(v) for k, v in state.items()}

    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != LEGACY_MAGIC:
            raise SystemExit(f"error: {path} is not a PyTorch checkpoint")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        pending = {}

        def defer(key, dtype, numel):
            pending[key] = np.empty(numel, dtype=dtype)
            return pending[key]

        state = _Unpickler(f, defer).load()
        keys = pickle.load(f)
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            buf = pending[key]
            data = np.frombuffer(f.read(numel * buf.itemsize), dtype=buf.dtype)
            if data.size != numel:
                raise SystemExit(f"error: {path} is truncated")
            buf[:] = data
        return {k: np.array(v) for k, v in state.items()}


def tensors_from_state_dict(state, arch="vgg19"):
    """{"conv1_1.weight": ..., ...} from torchvision's ``features.N.weight/bias`` keys."""
    tensors = {}
    for name, _, _, idx in vgg_layout.convs(arch):
        for kind in ("weight", "bias"):
            key = f"features.{idx}.{kind}"
            if key not in state:
                raise SystemExit(f"error: checkpoint has no '{key}' (is it torchvision's {arch}?)")
            tensors[f"{name}.{kind}"] = state[key]
    return tensors


def convert(pth, out_dir, arch="vgg19"):
    tensors = tensors_from_state_dict(read_state_dict(pth), arch)
    source = f"torchvision {arch} checkpoint {pth} (sha256 {vgg_layout.sha256_file(pth)})"
    vgg_layout.write_weights_dir(out_dir, arch, tensors, vgg_layout.TORCHVISION, source)

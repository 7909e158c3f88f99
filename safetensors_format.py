"""The safetensors format with numpy alone: read lazily and checked field by field,
written a tensor at a time.

A file is 8 bytes, the little-endian length N of its header; N bytes of JSON, an object
{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__":
{...}}; then the data, offsets counted from its start. The reader checks the whole
header against the file's size before it maps anything (a crafted or truncated file is
one line), and widens F16 and BF16 to float32 only when a tensor is asked for.
"""

import json
import math
import mmap

import numpy as np

from .errors import Failure
from .files import load_json, open_regular

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
MAX_HEADER = 100 << 20  # the reference implementation's limit too


class SafetensorsFile:
    """name -> tensor of a safetensors file, mapped read-only, read when asked for."""

    def __init__(self, path):
        self.path = str(path)
        with open_regular(path, "safetensors file") as f:
            size = f.seek(0, 2)
            if size < 8:
                self._fail(f"{size} bytes: too short for a header")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # read from this one map
        n = int.from_bytes(self._map[:8], "little")
        if n > min(MAX_HEADER, size - 8):
            self._fail(f"its header's length, {n} bytes, is more than the file holds")
        try:
            header = load_json(self._map[8:8 + n].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            self._fail("its header is not JSON")
        except ValueError as e:  # load_json's digits
            self._fail(f"its header holds {e}")
        if not isinstance(header, dict):
            self._fail("its header is not a JSON object")
        header.pop("__metadata__", None)
        self.data_offset, data_size = 8 + n, size - 8 - n
        self.entries = {}
        for name, entry in header.items():
            try:
                dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
                ok = (isinstance(dtype, str) and isinstance(shape, list)
                      and all(type(d) is int and d >= 0 for d in [*shape, begin, end]) and begin <= end <= data_size)
            except (TypeError, KeyError, ValueError):
                ok = False
            if not ok:
                self._fail(f"a bad header entry for {name!r}")
            if dtype in DTYPES and end - begin != math.prod(shape) * DTYPES[dtype].itemsize:
                self._fail(f"{name}: {end - begin} bytes of data for shape {shape} in {dtype}")
            self.entries[name] = (dtype, tuple(shape), begin)

    def _fail(self, what):
        raise Failure(f"{self.path}: not a safetensors file: {what}")

    def shape(self, name):
        return self.entries[name][1]

    def check_float(self, name):
        if self.entries[name][0] not in DTYPES:
            raise Failure(f"{self.path}: {name} is {self.entries[name][0]}; GPT-2's weights are one of F32, F16, BF16")

    def float32(self, name):
        """The tensor as a float32 array (F32 as mapped, read-only, without a copy)."""
        self.check_float(name)
        dtype, shape, begin = self.entries[name]
        count = math.prod(shape)
        if count == 0:
            return np.zeros(shape, np.float32)
        data = np.frombuffer(self._map, DTYPES[dtype], count, self.data_offset + begin).reshape(shape)
        if dtype == "BF16":
            return (data.astype(np.uint32) << 16).view(np.float32)
        return data if dtype == "F32" else data.astype(np.float32)


def write_safetensors(f, tensors, metadata=None):
    """Writes tensors (name -> float32 array, any strides) to the open binary file f, a
    tensor at a time: only one contiguous copy is held at once."""
    header, offset = {}, 0
    for name, tensor in tensors.items():
        nbytes = 4 * math.prod(tensor.shape)
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writes it
    f.write(len(text).to_bytes(8, "little"))
    f.write(text)
    for tensor in tensors.values():
        f.write(np.ascontiguousarray(tensor, dtype="<f4").data)

#!/usr/bin/python3
"""Shared PyTorch-side helpers for checking latent against PyTorch.

latent must match PyTorch exactly, so the reference generator, the checkpoint
evaluator and the training benchmark all build the model and read/write files
through this one module.  The `safetensors` package is not installed here, so
the (simple) format is implemented directly:

    u64 little-endian header length N | N bytes of JSON header (space padded
    to a multiple of 8) | raw little-endian tensor data, contiguous, no holes.

Run with /usr/bin/python3 (Debian's torch); import after putting tools/ on
sys.path.
"""
import gzip
import json
import os
import struct

import numpy as np
import torch
from torch import nn

_DTYPES = {  # torch dtype -> (safetensors name, numpy dtype)
    torch.float32: ("F32", "<f4"),
    torch.float64: ("F64", "<f8"),
    torch.int64: ("I64", "<i8"),
    torch.uint8: ("U8", "u1"),
}
_BY_NAME = {name: (tdt, ndt) for tdt, (name, ndt) in _DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    """Write `tensors` (name -> tensor) to `path` atomically (tmp + rename)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        st_name, np_dt = _DTYPES[t.dtype]
        data = t.detach().cpu().contiguous().numpy().astype(np_dt).tobytes()
        header[name] = {"dtype": st_name, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    """Return (name -> tensor, metadata dict); raises ValueError if malformed."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} past end of file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = memoryview(raw)[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    tensors, spans = {}, []
    for name, info in header.items():
        if info["dtype"] not in _BY_NAME:
            raise ValueError(f"{name}: unsupported dtype {info['dtype']}")
        tdt, ndt = _BY_NAME[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        begin, end = info["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(data) or end - begin != count * np.dtype(ndt).itemsize:
            raise ValueError(f"{name}: bad data_offsets {begin},{end} for shape {shape}")
        arr = np.frombuffer(data[begin:end], dtype=ndt).reshape(shape)
        tensors[name] = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="))).to(tdt)
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:  # contiguous, no holes, no overlaps
        if begin != pos:
            raise ValueError(f"{path}: hole or overlap in data at byte {pos}")
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes")
    return tensors, metadata


def build_autoencoder(d, p):
    """The default latent architecture: 28x28 -> d -> 28x28 (d=latent, p=dropout)."""
    encoder = nn.Sequential(
        nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(),           # 0,1   -> 8x14x14
        nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),          # 2,3   -> 16x7x7
        nn.Conv2d(16, 32, 3, 2, 0), nn.ReLU(),         # 4,5   -> 32x3x3
        nn.Flatten(),                                  # 6     -> 288
        nn.Linear(288, 64), nn.ReLU(), nn.Dropout(p),  # 7,8,9
        nn.Linear(64, d))                              # 10
    decoder = nn.Sequential(
        nn.Linear(d, 64), nn.ReLU(), nn.Dropout(p),    # 0,1,2
        nn.Linear(64, 288), nn.ReLU(),                 # 3,4
        nn.Unflatten(1, (32, 3, 3)),                   # 5
        nn.ConvTranspose2d(32, 16, 3, 2, 0, 0), nn.ReLU(),  # 6,7 -> 16x7x7
        nn.ConvTranspose2d(16, 8, 3, 2, 1, 1), nn.ReLU(),   # 8,9 -> 8x14x14
        nn.ConvTranspose2d(8, 1, 3, 2, 1, 1), nn.Sigmoid())  # 10,11 -> 1x28x28
    return encoder, decoder


class AutoEncoder(nn.Module):
    """Holds .encoder/.decoder so state_dict names match latent's checkpoints."""

    def __init__(self, d=2, p=0.0):
        super().__init__()
        self.encoder, self.decoder = build_autoencoder(d, p)

    def forward(self, x):
        return self.decoder(self.encoder(x))


def load_idx(path):
    """Read an IDX file (plain or gzip, detected by magic) into a uint8 tensor."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims, dtype=np.int64)):
        raise ValueError(f"{path}: size mismatch for dims {dims}")
    return torch.from_numpy(np.frombuffer(body, dtype=np.uint8).reshape(dims).copy())


def mnist_dir():
    """Where scripts/fetch-mnist puts MNIST: ${XDG_CACHE_HOME:-~/.cache}/latent/mnist."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(cache, "latent", "mnist")


def mnist_file(name, directory=None):
    """Path of an MNIST file in `directory` (default mnist_dir()), plain or .gz."""
    directory = directory or mnist_dir()
    for cand in (name, name + ".gz"):
        path = os.path.join(directory, cand)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{name} not found in {directory} (run scripts/fetch-mnist)")

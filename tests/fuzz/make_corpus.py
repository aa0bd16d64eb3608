#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/{npz,npy,idx}), which
tests/test_fuzz_corpus.cpp also reads.

    /usr/bin/python3 tests/fuzz/make_corpus.py BUILD_FUZZ/tests/fuzz/fuzz_make_seeds

npz: the project's own writer (fuzz_make_seeds: mixed arrays, checkpoints of the fuzz model),
     numpy.savez and numpy.savez_compressed, and truncations of both.
npy: arrays of those archives as plain .npy files, numpy.save in format versions 1.0, 2.0, 3.0,
     and truncations.
idx: IDX images and labels as MNIST has them, plain and gzipped, other ranks, and truncations.
Small files only: the fuzzers start from them and grow them. Needs Debian's python3-numpy.
"""
import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(kind, name, data):
    with open(os.path.join(CORPUS, kind, name), "wb") as f:
        f.write(data)


def read(kind, name):
    with open(os.path.join(CORPUS, kind, name), "rb") as f:
        return f.read()


def truncations(kind, name, cuts):
    data = read(kind, name)
    stem, ext = os.path.splitext(name)
    for cut in cuts:
        n = cut if cut >= 0 else len(data) + cut
        write(kind, f"{stem}_truncated_{n}{ext}", data[:n])


def npy_bytes(array, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array)
    else:
        np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


def npz_seeds():
    arrays = {
        "w": (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) / 4,
        "b": np.array([0.5, -1.0], dtype=np.float64),
        "s": np.float64(3.0),
        "f": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2) / 8),
        "e": np.zeros((0, 2), dtype=np.float32),
    }
    for name, save in [("numpy_savez.npz", np.savez), ("numpy_savez_compressed.npz", np.savez_compressed)]:
        buf = io.BytesIO()
        save(buf, **arrays)
        write("npz", name, buf.getvalue())
    truncations("npz", "numpy_savez.npz", [0, 21, 100, -23, -1])
    truncations("npz", "numpy_savez_compressed.npz", [60, -30])
    truncations("npz", "saved_adam_f4.npz", [200, -1])


def npy_seeds():
    # The first arrays of each npz seed as the .npy files inside the archive (the rest add nothing new).
    for archive in sorted(os.listdir(os.path.join(CORPUS, "npz"))):
        if "truncated" in archive:
            continue
        with zipfile.ZipFile(os.path.join(CORPUS, "npz", archive)) as z:
            for i, entry in enumerate(z.namelist()[:4]):
                stem = os.path.splitext(archive)[0]
                write("npy", f"{stem}_{i}.npy", z.read(entry))
    a = np.arange(12, dtype=np.float64).reshape(3, 4) / 16
    for version in [(1, 0), (2, 0), (3, 0)]:
        write("npy", f"numpy_v{version[0]}.npy", npy_bytes(a, version))
    write("npy", "numpy_fortran_f4.npy", npy_bytes(np.asfortranarray(a.astype(np.float32))))
    write("npy", "numpy_scalar.npy", npy_bytes(np.float64(-0.5)))
    write("npy", "numpy_rank4.npy", npy_bytes(np.ones((1, 2, 1, 2), dtype=np.float32)))
    # PyTorch's int64 buffers (num_batches_tracked), with the extremes float64 holds exactly.
    write("npy", "numpy_int64.npy", npy_bytes(np.array([3, -(2**53), 2**53], dtype=np.int64)))
    truncations("npy", "numpy_v1.npy", [9, 60, -1])


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def idx_seeds():
    images = (np.arange(3 * 4 * 5) * 7 % 256).reshape(3, 4, 5)
    labels = np.array([3, 0, 9])
    write("idx", "images-idx3-ubyte", idx_bytes(images))
    write("idx", "labels-idx1-ubyte", idx_bytes(labels))
    write("idx", "images-idx3-ubyte.gz", gzip.compress(idx_bytes(images), mtime=0))
    write("idx", "labels-idx1-ubyte.gz", gzip.compress(idx_bytes(labels), mtime=0))
    # Two gzip members one after another, read as one stream.
    raw = idx_bytes(labels)
    write("idx", "labels-two-members.gz", gzip.compress(raw[:6], mtime=0) + gzip.compress(raw[6:], mtime=0))
    write("idx", "rank2-idx2-ubyte", idx_bytes(np.arange(6).reshape(2, 3)))
    write("idx", "empty-idx1-ubyte", idx_bytes(np.zeros(0)))
    truncations("idx", "images-idx3-ubyte", [3, 10, -1])
    truncations("idx", "images-idx3-ubyte.gz", [10, -4])


def npy_header(header):
    """An .npy file (version 1.0) with this header text and no data."""
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    text = (header + " " * pad + "\n").encode()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def regression_inputs():
    """Inputs that exposed bugs, in tests/fuzz/regressions as <reader>-<what>; each must be refused.
    Arrays with a zero dimension before huge ones hold no data, so the element count passed the
    size check, but their strides (and an IDX file's rows * cols) overflowed: UBSan reports the
    overflow when the fuzz targets run these. Written here because they were made by hand; an
    input a fuzzer finds is copied into tests/fuzz/regressions as it is."""
    out = os.path.join(HERE, "regressions")
    os.makedirs(out, exist_ok=True)
    huge = "{'descr': '<f8', 'fortran_order': %s, 'shape': (0, 281474976710656, 281474976710656), }"
    for order in ["False", "True"]:
        name = f"npy-zero-then-huge-dims{'-fortran' if order == 'True' else ''}.npy"
        with open(os.path.join(out, name), "wb") as f:
            f.write(npy_header(huge % order))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo("0.weight.npy", date_time=(1980, 1, 1, 0, 0, 0)), npy_header(huge % "False"))
    with open(os.path.join(out, "npz-zero-then-huge-dims.npz"), "wb") as f:
        f.write(buf.getvalue())
    with open(os.path.join(out, "idx-images-zero-then-huge-dims"), "wb") as f:
        f.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 0, 0xFFFFFFFF, 0xFFFFFFFF))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for kind in ["npz", "npy", "idx"]:
        shutil.rmtree(os.path.join(CORPUS, kind), ignore_errors=True)
        os.makedirs(os.path.join(CORPUS, kind))
    subprocess.run([sys.argv[1], os.path.join(CORPUS, "npz")], check=True)
    npz_seeds()
    npy_seeds()
    idx_seeds()
    regression_inputs()
    for kind in ["npz", "npy", "idx"]:
        files = os.listdir(os.path.join(CORPUS, kind))
        size = sum(os.path.getsize(os.path.join(CORPUS, kind, f)) for f in files)
        print(f"{kind}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()

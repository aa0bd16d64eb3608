#!/usr/bin/python3
"""The .npz files of nn/npz.hpp against numpy itself, both ways (the ctest test npz_interop_with_numpy).

    /usr/bin/python3 tests/npz_interop.py PATH/TO/tests WORK_DIR

(a) The test binary writes from_cpp.npz and model.npz (its hidden "[.interop]" tests);
    numpy.load must read them with the right names, dtypes, shapes and values.
(b) numpy.savez and numpy.savez_compressed write the arrays of tests/fixtures/make_npz_fixtures.py;
    the test binary must read them back with their values.
Needs Debian's python3-numpy.
"""
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
from make_npz_fixtures import numpy_arrays  # noqa: E402


def run_catch(binary, work, test_name):
    env = dict(os.environ, AD_NPZ_INTEROP_DIR=work)
    # -w NoTests: a name that matches nothing fails instead of passing vacuously.
    r = subprocess.run([binary, test_name, "-w", "NoTests"], env=env, capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        sys.exit(f"FAILED: {test_name!r} exited with {r.returncode}")


def check(cond, what):
    if not cond:
        sys.exit("FAILED: " + what)
    print("ok:", what)


def numpy_reads_ours(work):
    for name in ["from_cpp.npz", "model.npz"]:
        with zipfile.ZipFile(os.path.join(work, name)) as z:
            check(z.testzip() is None, f"{name}: every entry's CRC-32 matches (zipfile.testzip)")
    with np.load(os.path.join(work, "from_cpp.npz")) as z:
        check(list(z.keys()) == ["f64", "f32", "third", "scalar", "empty"], f"names {list(z.keys())}")
        f64, f32, third, scalar, empty = (z[k] for k in ["f64", "f32", "third", "scalar", "empty"])
    check(f64.dtype == np.float64 and f64.shape == (3, 4), "f64 is float64 [3, 4]")
    check(np.array_equal(f64, np.arange(12.0).reshape(3, 4) / 8 - 0.75), "f64 values")
    check(f32.dtype == np.float32 and f32.shape == (5,), "f32 is float32 [5]")
    check(np.array_equal(f32, (np.arange(5.0) / 4 - 0.5).astype(np.float32)), "f32 values")
    check(np.array_equal(third, np.array([1 / 3, 2 * (1 / 3)])), "third: bit-exact doubles")
    check(scalar.shape == () and scalar == 0.1, "scalar 0.1 of shape ()")
    check(empty.shape == (0,) and empty.dtype == np.float64, "empty [0]")

    with np.load(os.path.join(work, "model.npz")) as z:
        keys = list(z.keys())
        check("0.weight" in keys and "1.running_mean" in keys, "saved model has parameters and buffers")
        check(z["0.weight"].shape == (4, 3) and z["0.weight"].dtype == np.float64, "0.weight [4, 3] float64")
        check(z["optim.exp_avg.0.weight"].shape == (4, 3), "optim.exp_avg.0.weight [4, 3]")
        check(z["optim.step"].shape == () and z["optim.step"] == 1.0, "optim.step = 1")
        check(z["optim.lr"] == 1e-3, "optim.lr = 1e-3")
        check(all(np.all(np.isfinite(z[k])) for k in keys), "every tensor finite")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    run_catch(binary, work, "interop: write npz files for numpy")
    numpy_reads_ours(work)

    arrays = numpy_arrays()
    np.savez(os.path.join(work, "from_numpy.npz"), **arrays)
    np.savez_compressed(os.path.join(work, "from_numpy_compressed.npz"), **arrays)
    run_catch(binary, work, "interop: read npz files numpy wrote")
    print("npz interop with numpy", np.__version__, "passed")


if __name__ == "__main__":
    main()

"""The project installed as a user installs it: a wheel (not editable) in a fresh virtual
environment that also has pyserial, whose import name `serial` is our backend folder's."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import ROOT


def run(*args, **kwargs):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_a_wheel_installs_one_package_beside_pyserial(tmp_path, make_model, gpt):
    # from a copy: a build in place would leave build/ in the checkout
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "*.bin", "__pycache__", "build", "*.egg-info"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", source)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    site = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    # numpy, numba, tiktoken and pyserial from the test environment, without their download
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel, = (tmp_path / "dist").glob("gpt_py-*.whl")
    before = {p.name for p in site.iterdir()}
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    assert {p.name for p in site.iterdir()} - before == {"gptpy", "gpt_py-0.1.0.dist-info"}

    where = run(venv / "bin" / "python", "-c", "import gptpy, serial; print(gptpy.__file__); print(serial.Serial)",
                cwd=tmp_path).split("\n")
    assert where[0].startswith(str(site)) and "serial" in where[1]  # ours from the venv; pyserial's Serial

    # the first run compiles the kernels into numba's cache, in the installed package,
    # and says so in one line; the second loads them and says nothing
    model = make_model(confident=True)
    runs = [subprocess.run([venv / "bin" / "gpt", "--backend", "serial", "--model", model, "3", "4"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=600) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0]
    assert runs[0].stderr.startswith("gpt: a first run on this CPU: compiling the kernels") and \
        len(runs[0].stderr.splitlines()) == 1, runs[0].stderr
    assert runs[1].stderr == ""
    installed = runs[1].stdout
    assert installed.split() == gpt("--model", model, "--backend", "serial", "3", "4").stdout.split()
    assert len(installed.split()) == 8 and runs[0].stdout == installed

    # an install numba cannot write its cache beside (each __pycache__ a file here; a
    # system install run by another user), no writable home, no NUMBA_CACHE_DIR: one
    # line, the kernels compiled into a temporary folder that is gone at the end
    for folder in (site / "gptpy").rglob("__pycache__"):
        shutil.rmtree(folder)
        folder.write_bytes(b"")
    for package in ("", "parallel", "serial", "gpu"):
        (site / "gptpy" / package / "__pycache__").write_bytes(b"")
    env = {key: value for key, value in os.environ.items() if key not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    nowhere = subprocess.run([venv / "bin" / "gpt", "--backend", "serial", "--model", model, "3", "4"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=600,
                             env={**env, "HOME": "/dev/null", "TMPDIR": str(temporary)})
    assert nowhere.returncode == 0 and nowhere.stdout == installed, nowhere.stderr
    assert nowhere.stderr.startswith("gpt: numba cannot keep compiled kernels here") and \
        len(nowhere.stderr.splitlines()) == 1, nowhere.stderr
    assert list(temporary.iterdir()) == []

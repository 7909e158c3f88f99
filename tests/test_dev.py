"""dev/'s experiment scripts at least start: each answers --help (its docstring), so that
none can rot unseen when the package moves under it."""

import subprocess
import sys

from conftest import ROOT

SCRIPTS = sorted(path for path in (ROOT / "dev").rglob("*.py") if path.name != "devargs.py")


def test_every_dev_script_answers_help():
    assert len(SCRIPTS) >= 20 and all(path.parent != ROOT / "dev" for path in SCRIPTS)  # grouped by subject
    procs = {path: subprocess.Popen([sys.executable, str(path), "--help"], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for path in SCRIPTS}
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        name = path.relative_to(ROOT)
        assert proc.returncode == 0, (name, err)
        assert out.startswith("usage:") and f"python {name}" in out, (name, out)


def test_every_dev_script_is_in_the_dev_readme():
    readme = (ROOT / "dev" / "README.md").read_text()
    for path in SCRIPTS:
        assert str(path.relative_to(ROOT / "dev")) in readme, path

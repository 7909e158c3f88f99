"""`make run`, the README's main job, in both of its branches; no network touched."""

import subprocess

from conftest import ROOT, VOCAB_50257


def make_run(*variables):
    result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "run", *variables],
                            capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr
    return result


def test_make_run_on_a_model_that_is_there(make_model):
    result = make_run(f"MODEL={make_model(VOCAB_50257, confident=True)}")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 8 and all(t.isdigit() for t in result.stdout.split())
    assert "real" in result.stderr  # the job is timed


def test_make_run_without_network_says_so_and_runs_on_random_weights(tmp_path, make_model):
    stand_in = make_model(VOCAB_50257, confident=True)  # stands for the 124M-shape random model
    result = make_run(f"MODEL={tmp_path / 'gpt2_124M.bin'}", "MODEL_URL=http://127.0.0.1:9/gpt2_124M.bin",
                      f"RANDOM_MODEL={stand_in}")
    assert result.returncode == 0, result.stderr
    assert "by hand" in result.stderr and "RANDOM weights" in result.stderr
    assert len(result.stdout.split()) == 8
    assert list(tmp_path.iterdir()) == []  # nothing half-downloaded

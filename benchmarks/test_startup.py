"""Whole-process time of `gpt --model random_124M.bin 31373 612`, as a user waits for
it: cold (an empty numba cache: every kernel compiles) and warm (the cache from an
earlier run: nothing compiles). The model file is in the page cache either way."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from results import RESULTS

GPT = [str(Path(sys.executable).with_name("gpt"))]


def run_gpt(model, env):
    done = subprocess.run([*GPT, "--model", str(model), "31373", "612"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and len(done.stdout.split()) == 8, done.stderr


@pytest.fixture
def model_path(model_124M):
    return model_124M.path


def test_cold_start(benchmark, record, model_path, tmp_path_factory):
    def empty_cache():
        return (model_path, {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path_factory.mktemp("numba"))}), {}

    benchmark.group = "start-up: whole process, gpt.c job"
    benchmark.pedantic(run_gpt, setup=empty_cache, rounds=2)
    record("cold start")


def test_warm_start(benchmark, record, model_path, tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    benchmark.group = "start-up: whole process, gpt.c job"
    benchmark.pedantic(run_gpt, args=(model_path, env), rounds=5, warmup_rounds=1)  # the warm-up fills the cache
    record("warm start")


@pytest.mark.parametrize("version,dtype", [(3, "fp32"), (3, "bf16"), (3, "int8"), (3, "int4"), (5, "bf16"), (5, "fp32"),
                                           (5, "int8"), (5, "int4")])
def test_peak_memory(model_path, version, dtype):
    """Not a timing: the whole process's peak resident memory (VmHWM) for the gpt.c job,
    for each file version and weight precision. The mapped file's pages count while they
    are mapped."""
    path = model_path
    if version == 5:
        path = Path(model_path).with_name("random_124M_v5.bin")
        if not path.exists():
            from gptpy import checkpoint, random_model
            checkpoint.write_checkpoint(path, checkpoint.GPT2_124M,
                                        random_model.random_pieces(checkpoint.GPT2_124M, confident=True), 5)
    code = ("import sys; from gptpy.gpt import main; code = main(sys.argv[1:]); "
            "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, "--model", str(path), "--dtype", dtype, "31373", "612"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and len(done.stdout.split()) == 8, done.stderr
    RESULTS[f"peak memory, version {version} file, --dtype {dtype}"] = int(done.stderr.split()[-2]) * 1024

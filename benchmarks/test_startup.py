"""Whole-process time of `gpt --model random_124M.bin 31373 612`, as a user waits for
it: cold (an empty numba cache: every kernel compiles) and warm (the cache from an
earlier run: nothing compiles). The model file is in the page cache either way."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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

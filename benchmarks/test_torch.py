"""The gpt.c job on Hugging Face transformers, for comparison (benchmarks/torch_worker.py,
in a process of its own); skipped where torch and transformers are not installed."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

if not (importlib.util.find_spec("torch") and importlib.util.find_spec("transformers")):
    pytest.skip("torch and transformers are not installed", allow_module_level=True)

WORKER = Path(__file__).with_name("torch_worker.py")


@pytest.fixture(scope="module")
def worker():
    proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = proc.stdout.readline()
    assert ready.startswith("ready"), ready
    yield proc, ready.split(maxsplit=1)[1].strip()
    proc.stdin.close()
    proc.wait(timeout=60)


def test_gpt_c_job_torch(benchmark, record, worker):
    proc, versions = worker

    def job():
        proc.stdin.write("job\n")
        proc.stdin.flush()
        return proc.stdout.readline().split()

    benchmark.group = "gpt.c job: 2 tokens in, 8 out"
    benchmark.extra_info["versions"] = versions
    tokens = benchmark.pedantic(job, rounds=10, warmup_rounds=2)
    assert len(tokens) == 8
    record("job torch")

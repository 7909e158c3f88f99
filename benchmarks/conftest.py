"""Benchmarks run on a seeded random checkpoint of GPT-2 124M's shape (`make random-model`)."""

from pathlib import Path

import pytest

import checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_124M():
    path = ROOT / "random_124M.bin"
    if not path.exists():
        checkpoint.write_checkpoint(path, checkpoint.GPT2_124M,
                                    checkpoint.random_params(checkpoint.GPT2_124M, confident=True), 3)
    return checkpoint.load_checkpoint(path)

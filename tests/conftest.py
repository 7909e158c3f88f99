"""Fixtures: small seeded checkpoints made on demand, and the `gpt` CLI as a subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest

from gptpy import checkpoint, random_model

ROOT = Path(__file__).resolve().parent.parent

# Odd on purpose: C not a multiple of 8, V not a multiple of anything, NH > 1.
SMALL = checkpoint.GPT2Config(max_seq_len=32, vocab_size=101, padded_vocab_size=128,
                              num_layers=2, num_heads=3, channels=36)


# GPT-2's vocabulary with tiny layers: for prompts of real text ("hello there" is 31373 612)
VOCAB_50257 = checkpoint.GPT2Config(max_seq_len=64, vocab_size=50257, padded_vocab_size=50304,
                                    num_layers=1, num_heads=2, channels=16)


@pytest.fixture(scope="session")
def make_model(tmp_path_factory):
    """make_model(config=SMALL, version=3, seed=0, confident=False) -> path of a checkpoint,
    written once per session for each set of arguments."""
    folder = tmp_path_factory.mktemp("models")
    made = {}

    def make(config=SMALL, version=3, seed=0, confident=False, lively=False, hesitant=False):
        """lively: attention scores and GELU inputs of order 1 (GPT-2's init keeps them
        near 0, where softmax is flat and GELU linear, and errors in either hide).
        hesitant: lively, with logits of a standard deviation of about 2 (the final gain
        x16): the most probable token has 15-30%, and gpt.c's coin mostly picks another."""
        lively = lively or hesitant
        key = (config, version, seed, confident, lively, hesitant)
        if key not in made:
            if version == 1:
                config = checkpoint.GPT2Config(**{**config.__dict__, "padded_vocab_size": config.vocab_size})
            params = random_model.random_params(config, seed, confident)
            if lively:  # powers of two: the values stay bfloat16-exact
                params["qkvw"] *= 8
                params["fcw"] *= 32
            if hesitant:
                params["lnfw"] *= 16
            path = folder / f"model{len(made)}_v{version}.bin"
            checkpoint.write_checkpoint(path, config, params, version)
            made[key] = path
        return made[key]

    return make


def command(name="gpt"):
    """An installed console script (gpt, gpt-chat, gpt-checkpoint, gpt-convert), as a user
    runs it; `make install` puts them beside the interpreter."""
    script = Path(sys.executable).with_name(name)
    assert script.exists(), f"{script} is not installed: run the tests with `make test`"
    return [str(script)]


def gpt_command():
    return command("gpt")


def run_cli(command, *args, timeout=120, **kwargs):
    result = subprocess.run([*command, *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, **kwargs)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def one_error_line(result, code):
    """The one line on stderr of a command that failed with `code`, and nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def gpt():
    """gpt(*args) -> CompletedProcess of the `gpt` CLI; never a traceback."""
    return lambda *args, **kwargs: run_cli(gpt_command(), *args, **kwargs)


def pytest_terminal_summary(terminalreporter):
    """Says at the end, plainly, whether the transformers oracle ran, and why not: its
    tests skip where torch's CPU build could not be installed."""
    reports = [r for kind in ("passed", "failed", "skipped") for r in terminalreporter.stats.get(kind, [])
               if "test_oracle.py" in getattr(r, "nodeid", "") and r.when in ("setup", "call")]
    skipped = [r for r in reports if r.skipped]
    if skipped:
        reason = skipped[0].longrepr[2] if isinstance(skipped[0].longrepr, tuple) else str(skipped[0].longrepr)
        terminalreporter.write_line(f"THE TRANSFORMERS ORACLE DID NOT RUN ({len(skipped)} tests skipped): {reason}",
                                    yellow=True, bold=True)
    elif reports:
        terminalreporter.write_line(f"the transformers oracle ran: {len({r.nodeid for r in reports})} tests")


@pytest.fixture
def hf(make_model, tmp_path):
    """A Hugging Face folder (config.json, model.safetensors) of the small model, by gpt-convert."""
    folder = tmp_path / "hf"
    assert run_cli(command("gpt-convert"), make_model(), folder).returncode == 0
    return folder

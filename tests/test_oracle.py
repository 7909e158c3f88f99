"""The independent oracle: Hugging Face transformers' GPT2LMHeadModel (PyTorch, CPU,
float32, eager attention), built from our generated checkpoints through gpt-convert, and
compared with every backend. Nobody here wrote it: where our numpy reference and our
kernels could share a misreading of GPT-2, this cannot."""

import numpy as np
import pytest

from gptpy import convert
from gptpy.checkpoint import GPT2Config, load_checkpoint
from conftest import SMALL, gpt_command, run_cli
from gptpy import backends
from gptpy.model import Activations, gpt2_forward

BACKENDS = backends.available()  # cuda where a GPU or numba's simulator is

SHAPES = {
    "small": SMALL,
    "4 heads": GPT2Config(max_seq_len=40, vocab_size=257, padded_vocab_size=320, num_layers=3, num_heads=4, channels=32),
    "1 head": GPT2Config(max_seq_len=16, vocab_size=50, padded_vocab_size=64, num_layers=1, num_heads=1, channels=20),
}
PROMPTS = [[7], [5, 10, 0, 42, 42, 3, 9, 1, 44]]


@pytest.fixture(scope="module")
def transformers_gpt2(tmp_path_factory):
    """hf(path) -> GPT2LMHeadModel of an llm.c checkpoint, converted by gpt-convert."""
    torch = pytest.importorskip("torch", reason="torch's CPU build is not installed (make install installs it where it can)")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    torch.set_num_threads(1)

    def hf(path):
        folder = tmp_path_factory.mktemp("hf")
        convert.llmc_to_hf(path, folder)
        return transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()

    return torch, hf


def hf_last_logits(torch, model, tokens):
    with torch.inference_mode():
        return model(torch.tensor([tokens])).logits[0, -1].double().numpy()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_last_position_logits_match_transformers(transformers_gpt2, make_model, backend, shape, prompt):
    torch, hf = transformers_gpt2
    config = SHAPES[shape]
    path = make_model(config, seed=3, confident=True, lively=True)  # logits ~20: errors show
    ckpt = load_checkpoint(path)
    expected = hf_last_logits(torch, hf(path), prompt)
    T = len(prompt)
    acts = Activations(config, 1, T)
    gpt2_forward(backends.load(backend).kernels, ckpt.params, config, acts, np.array([prompt], np.int32), 1, T)
    ours = acts.shaped(1, T, T)["logits"][0, -1, :config.vocab_size]
    diff = np.abs(ours - expected)
    assert diff.max() <= 1e-4, f"max |ours - transformers| = {diff.max():.2e} at token {diff.argmax()}"


def gpt_c_tokens(torch, model, prompt, n, vocab_size, margin=1e-3):
    """gpt.c's fixed-coin sampling on transformers' distributions (float64 CDF), checked
    to be no knife edge (see reference.sample_gpt_c)."""
    tokens = list(prompt)
    while len(tokens) < n:
        logits = hf_last_logits(torch, model, tokens)[:vocab_size]
        probs = np.exp(logits - logits.max())
        cdf = np.cumsum(probs / probs.sum())
        assert np.abs(cdf - 0.5).min() > margin, "a knife-edge sample: pick another prompt or seed"
        tokens.append(int(np.argmax(cdf > 0.5)))
    return tokens[len(prompt):]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt", [[17], [31, 61], [5, 10, 0, 42, 42, 3, 9, 1, 44]])
def test_gpt_prints_the_tokens_transformers_implies(transformers_gpt2, make_model, backend, prompt):
    torch, hf = transformers_gpt2
    path = make_model(SMALL, seed=1, confident=True)
    expected = gpt_c_tokens(torch, hf(path), prompt, 10, SMALL.vocab_size)
    result = run_cli(gpt_command(), "--model", path, "--backend", backend, *prompt)
    assert result.returncode == 0, result.stderr
    assert [int(t) for t in result.stdout.split()] == expected

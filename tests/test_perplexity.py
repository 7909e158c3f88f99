"""gpt-perplexity: the perplexity of a text against the numpy reference's cross-entropy,
the KL divergence and top-1 agreement between precisions, and bad input."""

import numpy as np
import pytest

from gptpy import backends
from gptpy.checkpoint import load_checkpoint
from gptpy.scoring import score, windows
from conftest import SMALL, VOCAB_50257, command, one_error_line, run_cli
from reference import gpt2_logits


def perplexity_cli(*args, **kwargs):
    return run_cli(command("gpt-perplexity"), *args, **kwargs)


def values(stdout):
    """The `name value` lines of gpt-perplexity's stdout."""
    return {line.split()[0]: float(line.split()[1]) for line in stdout.splitlines()}


def reference_perplexity(params, config, ids):
    """exp of the mean cross-entropy, in float64 numpy, window by window."""
    nll, scored = 0.0, 0
    for start, end in windows(len(ids), config.max_seq_len):
        logits = gpt2_logits(params, config, np.array(ids[start:end]))[:-1]
        logits = logits - logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        nll -= logp[np.arange(end - start - 1), ids[start + 1:end]].sum()
        scored += end - start - 1
    return float(np.exp(nll / scored))


def test_windows_cover_the_text_without_overlap():
    assert windows(70, 32) == [(0, 32), (32, 64), (64, 70)]
    assert windows(65, 32) == [(0, 32), (32, 64)]  # a last window of one token scores nothing
    assert windows(1, 32) == []


@pytest.mark.parametrize("n", [5, 32, 77])
def test_perplexity_is_the_reference_cross_entropy(make_model, tmp_path, n):
    """Token ids of a generated model (context 32): one window, exactly one, and three
    with a short last one."""
    model = make_model(lively=True)
    ids = np.random.default_rng(n).integers(0, SMALL.vocab_size, n).tolist()
    (tmp_path / "ids.txt").write_text(" ".join(map(str, ids)) + "\n")
    done = perplexity_cli("--model", model, "--ids", tmp_path / "ids.txt")
    assert done.returncode == 0, done.stderr
    expected = reference_perplexity(load_checkpoint(model).params, SMALL, ids)
    assert values(done.stdout)["perplexity"] == pytest.approx(expected, rel=1e-4)
    assert f"{n} tokens, {n - len(windows(n, 32))} scored in {len(windows(n, 32))} windows" in done.stderr


def test_a_text_is_read_with_gpt2s_encoding(make_model, tmp_path):
    from gptpy.encoding import gpt2_encoding
    model = make_model(VOCAB_50257, lively=True)
    text = "The meaning of life, according to most philosophers, is that we " * 12
    (tmp_path / "t.txt").write_text(text)
    (tmp_path / "ids.txt").write_text(" ".join(map(str, gpt2_encoding().encode(text))))
    by_text = perplexity_cli("--model", model, tmp_path / "t.txt")
    by_ids = perplexity_cli("--model", model, "--ids", tmp_path / "ids.txt")
    assert by_text.returncode == by_ids.returncode == 0 and by_text.stdout == by_ids.stdout


def test_against_another_precision(make_model, tmp_path):
    """int8 against fp32: what the library computes, printed; against itself, nothing differs."""
    model = make_model(lively=True)
    ids = np.random.default_rng(0).integers(0, SMALL.vocab_size, 100).tolist()
    (tmp_path / "ids.txt").write_text(" ".join(map(str, ids)))
    done = perplexity_cli("--model", model, "--ids", tmp_path / "ids.txt", "--dtype", "int8", "--against", "fp32")
    assert done.returncode == 0, done.stderr
    printed = values(done.stdout)
    kernels = backends.load("parallel").kernels
    int8, fp32 = load_checkpoint(model, "int8"), load_checkpoint(model, "fp32")
    scores = score(kernels, int8, ids, fp32, kv_dtype="bf16")  # int8's default cache
    assert printed["kl_divergence_mean"] == pytest.approx(np.mean(scores.kl), rel=1e-3)
    assert printed["kl_divergence_p99"] == pytest.approx(np.percentile(scores.kl, 99), rel=1e-3)
    assert printed["top1_agreement"] == pytest.approx(scores.same_top1 / scores.scored, abs=1e-4)
    assert 0 < printed["kl_divergence_mean"] < 0.05 and 0.5 < printed["top1_agreement"] <= 1
    itself = score(kernels, fp32, ids, fp32)
    assert max(abs(k) for k in itself.kl) < 1e-9 and itself.same_top1 == itself.scored


@pytest.mark.parametrize("args,content,message", [
    (["MISSING"], None, "no such text file"),
    (["TEXT"], b"", "empty: nothing to score"),
    (["TEXT"], b"  \n\t", "empty: nothing to score"),
    (["TEXT"], b"abc\0def", "a binary file"),
    (["TEXT"], b"caf\xe9", "not UTF-8"),
    (["--ids", "TEXT"], b"1 2 x", "'x' is not a token id"),
    (["--ids", "TEXT"], b"1 2 -3", "'-3' is not a token id"),
    (["--ids", "TEXT"], b"1 " + b"9" * 5000, "is not a token id"),
    (["--ids", "TEXT"], b"1 2 101", "token 101 is out of range"),
    (["--ids", "TEXT"], b"7", "1 token: nothing to score"),
    (["--ids", "TEXT", "--against", "fp32"], b"1 2 3", "--against fp32 is the precision measured"),
    (["--ids", "TEXT", "--dtype", "int8", "--against", "int8"], b"1 2 3", "--against int8 is the precision measured"),
    ([], None, "give a TEXT_FILE or --ids IDS_FILE"),
    (["TEXT", "--ids", "TEXT"], b"1 2", "give a TEXT_FILE or --ids IDS_FILE"),
    (["--ids", "TEXT", "--against", "int3"], b"1 2", "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(make_model, tmp_path, args, content, message):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    args = [str(tmp_path / "missing.txt") if a == "MISSING" else str(path) if a == "TEXT" else a for a in args]
    line = one_error_line(perplexity_cli("--model", make_model(), *args), 2)
    assert line.startswith("gpt-perplexity: error: ") and message in line, line


def test_a_fifo_as_the_text_is_refused_not_waited_on(make_model, tmp_path):
    import os
    os.mkfifo(tmp_path / "fifo")
    line = one_error_line(perplexity_cli("--model", make_model(), tmp_path / "fifo", timeout=30), 2)
    assert "is a FIFO" in line


def test_a_terminal_gets_a_progress_bar(make_model, tmp_path):
    import pexpect
    (tmp_path / "ids.txt").write_text(" ".join(["5"] * 300))
    child = pexpect.spawn(command("gpt-perplexity")[0], ["--model", str(make_model()), "--ids",
                                                        str(tmp_path / "ids.txt")], encoding="utf-8", timeout=120)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "scoring" in child.before and "100%" in child.before and "tok/s" in child.before
    assert "perplexity " in child.before

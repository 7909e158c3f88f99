"""gpt-convert: llm.c <-> Hugging Face GPT-2 folders, with numpy alone (the reference
safetensors library writes and reads the files the tests craft and check)."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gptpy.checkpoint import load_checkpoint
from conftest import SMALL, command, run_cli


def convert(*args, **kwargs):
    return run_cli(command("gpt-convert"), *args, **kwargs)


@pytest.mark.parametrize("version", [1, 3, 5])
def test_round_trip_is_byte_identical(make_model, tmp_path, version):
    source = make_model(version=version)
    assert convert(source, tmp_path / "hf").returncode == 0
    back = tmp_path / "back.bin"
    result = convert(tmp_path / "hf", back, "--version", version)
    assert result.returncode == 0, result.stderr
    assert back.read_bytes() == source.read_bytes()


def test_exported_folder_is_hugging_face_gpt2(make_model, tmp_path):
    convert(make_model(), tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["model_type"], config["n_layer"], config["n_head"], config["n_embd"]) == ("gpt2", 2, 3, 36)
    assert (config["vocab_size"], config["n_positions"], config["activation_function"]) == (101, 32, "gelu_new")
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    ckpt = load_checkpoint(make_model())
    assert tensors["transformer.wte.weight"].shape == (101, 36)  # no padding rows
    # Conv1D weights are (in, out): llm.c's (out, in) transposed
    np.testing.assert_array_equal(tensors["transformer.h.1.attn.c_attn.weight"], ckpt.params["qkvw"][1].T)
    assert "lm_head.weight" not in tensors  # tied to wte


def rewrite(folder, change):
    """Edits a folder's model.safetensors in place: change(dict of tensors) -> dict."""
    path = str(folder / "model.safetensors")
    save_file(change(load_file(path)), path)


def test_published_name_variants_are_accepted(make_model, tmp_path):
    """No `transformer.` prefix, the old attention-mask buffers, a saved (tied) lm_head."""
    hf = tmp_path / "hf"
    convert(make_model(), hf)

    def like_published(tensors):
        out = {name.removeprefix("transformer."): t for name, t in tensors.items()}
        for l in range(SMALL.num_layers):
            out[f"h.{l}.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
            out[f"h.{l}.attn.masked_bias"] = np.array(-1e4, np.float32)
        out["lm_head.weight"] = out["wte.weight"].copy()
        return out

    rewrite(hf, like_published)
    result = convert(hf, tmp_path / "m.bin")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.bin").read_bytes() == make_model().read_bytes()


@pytest.mark.parametrize("change,message", [
    (lambda t: {**t, "transformer.h.0.mlp.c_fc.weight": t["transformer.h.0.mlp.c_fc.weight"].T.copy()},
     "h.0.mlp.c_fc.weight has shape (144, 36), expected (36, 144)"),
    (lambda t: {k: v for k, v in t.items() if k != "transformer.ln_f.bias"}, "has no ln_f.bias"),
    (lambda t: {**t, "lm_head.weight": t["transformer.wte.weight"] + 1}, "lm_head.weight differs from wte.weight"),
    (lambda t: {**t, "transformer.h.0.extra.weight": np.zeros(3, np.float32)}, "tensors GPT-2 does not have: h.0.extra.weight"),
])
def test_a_bad_folder_is_one_line_and_writes_nothing(make_model, tmp_path, change, message):
    hf = tmp_path / "hf"
    convert(make_model(), hf)
    rewrite(hf, change)
    result = convert(hf, tmp_path / "m.bin")
    assert result.returncode == 1 and message in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1
    assert not (tmp_path / "m.bin").exists() and not list(tmp_path.glob(".m.bin*"))


def test_missing_files(tmp_path, make_model):
    (tmp_path / "empty").mkdir()
    result = convert(tmp_path / "empty", tmp_path / "m.bin")
    assert result.returncode == 1 and "no config.json" in result.stderr
    result = convert(tmp_path / "nothing.bin", tmp_path / "hf")
    assert result.returncode == 1 and "no such model file" in result.stderr


def test_a_converted_model_completes_like_the_original(gpt, make_model, tmp_path):
    source = make_model(confident=True)
    convert(source, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "bf16.bin", "--version", "5")
    original = gpt("--model", source, "5", "6")
    converted = gpt("--model", tmp_path / "bf16.bin", "5", "6")
    assert original.returncode == converted.returncode == 0
    assert converted.stdout == original.stdout  # the generator's values are bfloat16-exact


def hf_numpy_logits(folder, tokens):
    """Hugging Face's GPT2LMHeadModel written in numpy over the exported folder, read with
    the reference safetensors library: Conv1D layers compute x @ W + b with W stored
    (in, out), names as transformers has them, the LM head tied to wte. Without torch, it
    checks every transpose the converter makes, the square attn.c_proj's included."""
    from reference import gelu, layernorm, softmax
    config = json.loads((folder / "config.json").read_text())
    t = {name.removeprefix("transformer."): x.astype(np.float64)
         for name, x in load_file(str(folder / "model.safetensors")).items()}
    T, C, NH = len(tokens), config["n_embd"], config["n_head"]
    eps = config["layer_norm_epsilon"]
    x = t["wte.weight"][tokens] + t["wpe.weight"][:T]
    for l in range(config["n_layer"]):
        h = layernorm(x, t[f"h.{l}.ln_1.weight"], t[f"h.{l}.ln_1.bias"], eps)
        q, k, v = np.split(h @ t[f"h.{l}.attn.c_attn.weight"] + t[f"h.{l}.attn.c_attn.bias"], 3, axis=-1)
        q, k, v = (y.reshape(T, NH, C // NH).transpose(1, 0, 2) for y in (q, k, v))
        scores = np.where(np.tri(T, dtype=bool), q @ k.transpose(0, 2, 1) / np.sqrt(C // NH), -np.inf)
        attn = (softmax(scores) @ v).transpose(1, 0, 2).reshape(T, C)
        x = x + attn @ t[f"h.{l}.attn.c_proj.weight"] + t[f"h.{l}.attn.c_proj.bias"]
        h = layernorm(x, t[f"h.{l}.ln_2.weight"], t[f"h.{l}.ln_2.bias"], eps)
        h = gelu(h @ t[f"h.{l}.mlp.c_fc.weight"] + t[f"h.{l}.mlp.c_fc.bias"])
        x = x + h @ t[f"h.{l}.mlp.c_proj.weight"] + t[f"h.{l}.mlp.c_proj.bias"]
    return layernorm(x, t["ln_f.weight"], t["ln_f.bias"], eps) @ t["wte.weight"].T


def test_the_exported_folder_computes_gpt2_in_hugging_faces_layout(make_model, tmp_path):
    """Without torch: the exported folder, run in HF's layout, gives the llm.c file's logits.
    A transposed square matrix would keep every shape and round-trip byte for byte; here
    it fails, as the second half shows."""
    from reference import gpt2_logits
    path = make_model(confident=True, lively=True)
    assert convert(path, tmp_path / "hf").returncode == 0
    tokens = np.array([5, 100, 0, 42, 42, 3, 99, 1, 64])
    expected = gpt2_logits(load_checkpoint(path).params, SMALL, tokens)
    np.testing.assert_allclose(hf_numpy_logits(tmp_path / "hf", tokens), expected, rtol=0, atol=1e-6)
    rewrite(tmp_path / "hf", lambda t: {**t, "transformer.h.0.attn.c_proj.weight":
                                        t["transformer.h.0.attn.c_proj.weight"].T.copy()})
    assert np.abs(hf_numpy_logits(tmp_path / "hf", tokens) - expected).max() > 1e-2

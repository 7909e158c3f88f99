"""gpt-convert: Hugging Face GPT-2 folders <-> llm.c checkpoints, with numpy and safetensors.

    gpt-convert HF_FOLDER model.bin [--version 3|5|1]   # config.json + model.safetensors -> llm.c
    gpt-convert model.bin HF_FOLDER                     # llm.c -> config.json + model.safetensors

Hugging Face's GPT-2 uses Conv1D layers, whose weights are stored (in, out); llm.c's are
(out, in). The LM head is tied to the token embedding in both. llm.c pads the vocabulary
with zero rows (to a multiple of 128: 50257 -> 50304); config.json keeps the padded size
under `llmc_padded_vocab_size`, so that llm.c -> HF -> llm.c gives the same bytes back.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

from checkpoint import (STORAGE_DTYPE, ArgumentParser, CheckpointError, GPT2Config, Progress,
                        load_checkpoint, parameter_table, write_checkpoint)

# llm.c name -> (Hugging Face name, with {l} for the layer; stored (in, out) by Conv1D)
HF_NAMES = {
    "wte": ("wte.weight", False), "wpe": ("wpe.weight", False),
    "ln1w": ("h.{l}.ln_1.weight", False), "ln1b": ("h.{l}.ln_1.bias", False),
    "qkvw": ("h.{l}.attn.c_attn.weight", True), "qkvb": ("h.{l}.attn.c_attn.bias", False),
    "attprojw": ("h.{l}.attn.c_proj.weight", True), "attprojb": ("h.{l}.attn.c_proj.bias", False),
    "ln2w": ("h.{l}.ln_2.weight", False), "ln2b": ("h.{l}.ln_2.bias", False),
    "fcw": ("h.{l}.mlp.c_fc.weight", True), "fcb": ("h.{l}.mlp.c_fc.bias", False),
    "fcprojw": ("h.{l}.mlp.c_proj.weight", True), "fcprojb": ("h.{l}.mlp.c_proj.bias", False),
    "lnfw": ("ln_f.weight", False), "lnfb": ("ln_f.bias", False),
}
PREFIX = "transformer."  # GPT2LMHeadModel's names carry it, GPT2Model's do not
BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older exports: not weights


class ConversionError(Exception):
    """A source that cannot be converted; the message is one line."""


def hf_to_llmc(src, dst, version=3):
    """A Hugging Face GPT-2 folder -> an llm.c checkpoint (written atomically)."""
    from safetensors.numpy import load_file

    src = Path(src)
    try:
        hf = json.loads((src / "config.json").read_text())
        tensors = load_file(str(src / "model.safetensors"))
    except FileNotFoundError as e:
        raise ConversionError(f"{src}: no {Path(e.filename).name}: a Hugging Face GPT-2 folder holds "
                              "config.json and model.safetensors") from None
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise ConversionError(f"{src}: cannot read: {e}") from None
    try:
        V = hf["vocab_size"]
        config = GPT2Config(max_seq_len=hf["n_positions"], vocab_size=V,
                            padded_vocab_size=V if version == 1 else hf.get("llmc_padded_vocab_size", -(-V // 128) * 128),
                            num_layers=hf["n_layer"], num_heads=hf["n_head"], channels=hf["n_embd"])
    except KeyError as e:
        raise ConversionError(f"{src / 'config.json'}: no {e} (is this a GPT-2 config?)") from None

    tensors = {name.removeprefix(PREFIX): t for name, t in tensors.items() if not name.endswith(BUFFERS)}
    if "lm_head.weight" in tensors:  # a tied head, when saved, is a copy of wte
        if not np.array_equal(tensors.pop("lm_head.weight"), tensors.get("wte.weight")):
            raise ConversionError(f"{src}: lm_head.weight differs from wte.weight; llm.c ties them")
    params, done = {}, 0
    progress = Progress(f"{src.name} -> {Path(dst).name}", sum(t.nbytes for t in tensors.values()))
    for name, shape in parameter_table(config):
        hf_name, conv1d = HF_NAMES[name]
        per_layer = "{l}" in hf_name
        layers = [tensors.pop(hf_name.format(l=l), None) for l in range(config.num_layers if per_layer else 1)]
        want = shape[1:] if per_layer else shape
        if name == "wte":
            want = (config.vocab_size, config.channels)  # unpadded in HF
        hf_want = want[::-1] if conv1d else want
        for l, tensor in enumerate(layers):
            where = hf_name.format(l=l)
            if tensor is None:
                raise ConversionError(f"{src}: model.safetensors has no {where}")
            if tensor.shape != hf_want:
                raise ConversionError(f"{src}: {where} has shape {tensor.shape}, expected {hf_want} for {config}")
            done += tensor.nbytes
        stacked = np.stack([t.T if conv1d else t for t in layers]) if per_layer else layers[0]
        params[name] = np.asarray(stacked, dtype=np.float32)
        progress.update(done)
    progress.close()
    if tensors:
        raise ConversionError(f"{src}: tensors GPT-2 does not have: {', '.join(sorted(tensors)[:5])}")
    padding = config.padded_vocab_size - config.vocab_size
    params["wte"] = np.pad(params["wte"], ((0, padding), (0, 0)))
    write_checkpoint(dst, config, params, version)
    return config


def llmc_to_hf(src, dst):
    """An llm.c checkpoint -> a Hugging Face GPT-2 folder (config.json + model.safetensors)."""
    from safetensors.numpy import save_file

    ckpt = load_checkpoint(src)
    c, p = ckpt.config, ckpt.params
    tensors, done = {}, 0
    padding_bytes = 4 * (c.padded_vocab_size - c.vocab_size) * c.channels  # not exported
    progress = Progress(f"{Path(src).name} -> {Path(dst).name}", sum(p[name].nbytes for name in HF_NAMES) - padding_bytes)
    for name, (hf_name, conv1d) in HF_NAMES.items():
        tensor = p[name][:c.vocab_size] if name == "wte" else p[name]
        for l, layer in enumerate(tensor if "{l}" in hf_name else [tensor]):
            tensors[PREFIX + hf_name.format(l=l)] = np.ascontiguousarray(layer.T if conv1d else layer)
        done += tensor.nbytes
        progress.update(done)
    progress.close()
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": c.vocab_size, "n_positions": c.max_seq_len, "n_ctx": c.max_seq_len,
        "n_embd": c.channels, "n_layer": c.num_layers, "n_head": c.num_heads,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
        "bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32",
        "llmc_padded_vocab_size": c.padded_vocab_size,
    }
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0o022)
    os.umask(umask)
    for name, write in (("model.safetensors", lambda path: save_file(tensors, path, metadata={"format": "pt"})),
                        ("config.json", lambda path: Path(path).write_text(json.dumps(config, indent=2) + "\n"))):
        tmp = dst / f".{name}.tmp{os.getpid()}"
        try:
            write(str(tmp))
            os.chmod(tmp, 0o666 & ~umask)  # safetensors creates its files private
            os.replace(tmp, dst / name)
        finally:
            tmp.unlink(missing_ok=True)
    return c


def main(argv=None):
    parser = ArgumentParser(prog="gpt-convert", description="Convert GPT-2 weights between a Hugging Face folder "
                            "(config.json + model.safetensors) and an llm.c checkpoint; the direction follows SRC.")
    parser.add_argument("src", help="a Hugging Face GPT-2 folder, or an llm.c checkpoint file")
    parser.add_argument("dst", help="the llm.c checkpoint to write, or the folder to write")
    parser.add_argument("--version", type=int, choices=sorted(STORAGE_DTYPE), default=3,
                        help="llm.c version to write: 3 float32 (default), 5 bfloat16, 1 float32 unpadded")
    args = parser.parse_args(argv)
    try:
        if Path(args.src).is_dir():
            config = hf_to_llmc(args.src, args.dst, args.version)
        else:
            config = llmc_to_hf(args.src, args.dst)
    except (ConversionError, CheckpointError) as e:
        print(f"gpt-convert: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"gpt-convert: error: {e.filename or args.dst}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ngpt-convert: interrupted", file=sys.stderr)
        return 130
    print(f"wrote {args.dst}: {config}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

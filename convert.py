"""gpt-convert: Hugging Face GPT-2 folders <-> llm.c checkpoints, with numpy alone.

    gpt-convert HF_FOLDER model.bin [--version 3|5|1]   # config.json + model.safetensors -> llm.c
    gpt-convert model.bin HF_FOLDER                     # llm.c -> config.json + model.safetensors

Hugging Face's GPT-2 uses Conv1D layers, whose weights are stored (in, out); llm.c's are
(out, in). The LM head is tied to the token embedding in both. llm.c pads the vocabulary
with zero rows (checkpoint.padded_vocab); config.json keeps the padded size under
`llmc_padded_vocab_size`, so that llm.c -> HF -> llm.c gives the same bytes back. Both
directions hold one layer in memory at a time, and check everything they can (the
config, every name and shape) before they write.
"""

import json
import os
import re
from pathlib import Path

from . import cli
from .errors import Failure
from .files import Missing, load_json, open_regular

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
CONFIG_FIELDS = {"max_seq_len": "n_positions", "vocab_size": "vocab_size", "num_layers": "n_layer",
                 "num_heads": "n_head", "channels": "n_embd"}


def read_hf_config(path, version):
    """config.json -> GPT2Config, checked by the loader's rules (checkpoint.config_problem)."""
    from .checkpoint import GPT2Config, config_problem, padded_vocab

    try:
        f = open_regular(path, path.name)
    except Missing:
        raise not_in_folder(path) from None
    with f:
        text = f.read((1 << 20) + 1)
    if len(text) > 1 << 20:
        raise Failure(f"{path}: over 1 MB: not a GPT-2 config.json")
    try:
        hf = load_json(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Failure(f"{path}: not JSON") from None
    except ValueError as e:  # load_json's digits
        raise Failure(f"{path}: {e}, more than a GPT-2 config.json holds") from None
    if not isinstance(hf, dict):
        raise Failure(f"{path}: not a JSON object (is this a GPT-2 config.json?)")
    fields = {}
    for field, key in CONFIG_FIELDS.items():
        if key not in hf:
            raise Failure(f"{path}: no {key} (is this a GPT-2 config.json?)")
        fields[field] = hf[key]
    fields["padded_vocab_size"] = hf.get("llmc_padded_vocab_size", None)
    V = fields["vocab_size"]
    if version == 1 or fields["padded_vocab_size"] is None:
        fields["padded_vocab_size"] = V if version == 1 or type(V) is not int else padded_vocab(V)
    config = GPT2Config(**fields)
    problem = config_problem(config, version)
    if problem:
        names = {"maxT": "n_positions", "V": "vocab_size", "Vp": "llmc_padded_vocab_size", "L": "n_layer",
                 "NH": "n_head", "C": "n_embd"}
        problem = re.sub(r"\b(maxT|Vp|V|L|NH|C)\b(?= =)", lambda m: names[m.group(1)], problem)
        raise Failure(f"{path}: {problem}")
    return config


def not_in_folder(path):
    return Failure(f"{path.parent}: no {path.name}: a Hugging Face GPT-2 folder holds config.json "
                   "and model.safetensors")


def hf_tensors(src, config):
    """src/model.safetensors, checked against config (every tensor there, of its shape and
    a float type, and no other), and {its names without the prefix: as stored}."""
    import numpy as np

    from .safetensors_format import SafetensorsFile

    try:
        st = SafetensorsFile(src / "model.safetensors")
    except Missing:
        raise not_in_folder(src / "model.safetensors") from None
    names = {}
    for name in st.entries:
        if name.endswith(BUFFERS):
            continue
        short = name.removeprefix(PREFIX)
        if short in names:  # both transformer.X and X
            if not np.array_equal(st.float32(names[short]), st.float32(name)):
                raise Failure(f"{src}: both {PREFIX}{short} and {short}, with different values")
            continue
        names[short] = name
    head = names.pop("lm_head.weight", None)  # a tied head, when saved, is a copy of wte
    if head and "wte.weight" in names and not np.array_equal(st.float32(head), st.float32(names["wte.weight"])):
        raise Failure(f"{src}: lm_head.weight differs from wte.weight; llm.c ties them")
    numbers = [m.group(1) for name in names if (m := re.match(r"h\.(\d+)\.", name))]
    if any(len(number) > 9 for number in numbers):
        raise Failure(f"{src}: a layer numbered with {max(map(len, numbers))} digits")
    layers = set(map(int, numbers))
    if layers != set(range(len(layers))) or len(layers) != config.num_layers:
        raise Failure(f"{src}: config.json says n_layer = {config.num_layers}, model.safetensors holds "
                      f"{len(layers)} layers" + ("" if layers == set(range(len(layers))) else f" numbered up to {max(layers)}"))
    expected = expected_shapes(config)
    for name, shape in expected.items():
        if name not in names:
            raise Failure(f"{src}: model.safetensors has no {name}")
        if st.shape(names[name]) != shape:
            raise Failure(f"{src}: {name} has shape {st.shape(names[name])}, expected {shape} for {config}")
        st.check_float(names[name])
    if len(names) > len(expected):
        raise Failure(f"{src}: tensors GPT-2 does not have: {', '.join(sorted(set(names) - set(expected))[:5])}")
    return st, names


def expected_shapes(config):
    """Hugging Face name -> its shape there (Conv1D's (in, out); wte unpadded)."""
    from .checkpoint import parameter_table

    shapes = {}
    for name, shape in parameter_table(config):
        hf_name, conv1d = HF_NAMES[name]
        per_layer = "{l}" in hf_name
        want = shape[1:] if per_layer else shape
        if name == "wte":
            want = (config.vocab_size, config.channels)
        for l in range(config.num_layers if per_layer else 1):
            shapes[hf_name.format(l=l)] = want[::-1] if conv1d else want
    return shapes


def hf_to_llmc(src, dst, version=3):
    """A Hugging Face GPT-2 folder -> an llm.c checkpoint (written atomically)."""
    import numpy as np

    from .checkpoint import file_size, write_checkpoint

    src = Path(src)
    refuse_overwriting([src / "config.json", src / "model.safetensors"], [dst])
    config = read_hf_config(src / "config.json", version)
    st, stored = hf_tensors(src, config)

    def pieces():
        for name, (hf_name, conv1d) in HF_NAMES.items():
            for l in range(config.num_layers if "{l}" in hf_name else 1):
                tensor = st.float32(stored[hf_name.format(l=l)])
                yield name, tensor.T if conv1d else tensor
            if name == "wte" and config.padded_vocab_size > config.vocab_size:
                yield name, np.zeros((config.padded_vocab_size - config.vocab_size, config.channels), np.float32)

    with cli.Progress(f"{src.name} -> {Path(dst).name}", file_size(config, version)) as progress:
        write_checkpoint(dst, config, pieces(), version, progress.update)
    return config


def llmc_to_hf(src, dst):
    """An llm.c checkpoint -> a Hugging Face GPT-2 folder (config.json + model.safetensors)."""
    from .checkpoint import load_checkpoint
    from .files import atomic_outputs
    from .safetensors_format import write_safetensors

    dst = Path(dst)
    refuse_overwriting([src], [dst / "model.safetensors", dst / "config.json"])
    ckpt = load_checkpoint(src, "fp32")  # safetensors gets float32 values, whatever the file holds
    c, p = ckpt.config, ckpt.params
    tensors = {}
    for name, (hf_name, conv1d) in HF_NAMES.items():
        tensor = p[name][:c.vocab_size] if name == "wte" else p[name]  # the padding is not exported
        for l, layer in enumerate(tensor if "{l}" in hf_name else [tensor]):
            tensors[PREFIX + hf_name.format(l=l)] = layer.T if conv1d else layer
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": c.vocab_size, "n_positions": c.max_seq_len, "n_ctx": c.max_seq_len,
        "n_embd": c.channels, "n_layer": c.num_layers, "n_head": c.num_heads,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
        "bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32",
        "llmc_padded_vocab_size": c.padded_vocab_size,
    }
    made = not dst.exists()
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Failure(f"{dst}: cannot make the folder: {e.strerror}") from None
    try:
        # both written, then both renamed back to back: the folder has the pair, or neither
        with atomic_outputs([(dst / "model.safetensors", "file"), (dst / "config.json", "file")]) as (f, g):
            write_safetensors(f, tensors, metadata={"format": "pt"})
            g.write((json.dumps(config, indent=2) + "\n").encode())
    except BaseException:
        if made:  # the folder this run made, left empty: gone too
            try:
                dst.rmdir()
            except OSError:
                pass
        raise
    return c


def refuse_overwriting(reads, writes):
    """Refuses a destination that is (or links to) a file the conversion reads."""
    for w in writes:
        for r in reads:
            try:
                same = os.path.samefile(r, w)
            except OSError:  # one of them does not exist
                same = False
            if same:
                raise Failure(f"{w}: is the source {r}, which the conversion reads; write elsewhere", code=2)


def run(argv):
    parser = cli.ArgumentParser(prog="gpt-convert", description="Convert GPT-2 weights between a Hugging Face folder "
                                "(config.json + model.safetensors) and an llm.c checkpoint; the direction follows SRC.")
    parser.add_argument("src", help="a Hugging Face GPT-2 folder, or an llm.c checkpoint file")
    parser.add_argument("dst", help="the llm.c checkpoint to write, or the folder to write")
    parser.add_argument("--version", type=int, choices=[3, 5, 1], default=3,
                        help="llm.c version to write: 3 float32 (default), 5 bfloat16, 1 float32 unpadded")
    args = parser.parse_args(argv)
    from .bus_error import say_bus_errors
    say_bus_errors("gpt-convert")  # its sources are mapped: they may shrink under it
    if Path(args.src).is_dir():
        config = hf_to_llmc(args.src, args.dst, args.version)
    else:
        config = llmc_to_hf(args.src, args.dst)
    cli.say(f"wrote {args.dst}: {config}")
    return 0


main = cli.command("gpt-convert", run)

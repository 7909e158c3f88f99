"""gpt: complete a sequence of GPT-2 token ids, as gpt.c does.

    gpt 31373 612          # "hello there" -> 8 more token ids, one per line

n = 10 tokens in total, the input included. Each step samples the next token from the
last position's distribution with gpt.c's fixed coin of 0.5. gpt.c runs the forward pass
over all the tokens so far every step (--recompute, and always the serial backend); by
default the prompt runs once and each step runs only its new position against a KV
cache: the same tokens. Tokens go to stdout as they come; everything else to stderr.
"""

import os
import re
import sys

import numpy as np

from checkpoint import DEFAULT_MODEL, ArgumentParser, CheckpointError, load_checkpoint
from model import BACKENDS, Activations, ProfiledKernels, gpt2_forward, load_backend, memory_of

COIN = 0.5  # gpt.c samples with a fixed coin: the output is a function of the input


def sample_mult(probabilities, n, coin):
    """gpt.c's sampler: the first i with coin < cdf[i], the CDF summed in float32 from
    index 0 (np.cumsum accumulates sequentially, as the C loop does); n-1 if none is."""
    cdf = np.cumsum(probabilities[:n], dtype=np.float32)
    i = int(np.argmax(cdf > np.float32(coin)))  # the first True, or 0 when there is none
    return i if cdf[i] > np.float32(coin) else n - 1


def generate(kernels, checkpoint, tokens, n, recompute=False):
    """Yields the n - len(tokens) tokens that follow `tokens`, one forward pass each.
    recompute: run the whole prefix every step, with logits at every position, as gpt.c
    does. Otherwise the prompt runs once and each later step runs only the new position
    against the KV cache, with logits at the last position only: same math, same tokens."""
    config, memory = checkpoint.config, memory_of(kernels)
    params = memory.upload(checkpoint.params)  # the GPU's copy of the weights, made once
    inputs = np.zeros((1, n), dtype=np.int32)
    inputs[0, :len(tokens)] = tokens
    acts = Activations(config, 1, n - 1, memory.zeros)
    cached = 0  # positions whose keys and values are in acts
    for t in range(len(tokens), n):
        if recompute:
            probs = gpt2_forward(kernels, params, config, acts, inputs, 1, t)
        else:
            probs = gpt2_forward(kernels, params, config, acts, inputs, 1, t, cached, last_only=True)
            cached = t
        next_token = sample_mult(memory.to_host(probs[0, -1]), config.vocab_size, COIN)
        inputs[0, t] = next_token
        yield next_token


def parse_args(argv):
    parser = ArgumentParser(
        prog="gpt",
        description="Complete a sequence of GPT-2 token ids to N tokens in total, as gpt.c does: "
                    "one new token id per line on stdout.",
        epilog="example: gpt 31373 612   (\"hello there\"; chat.py takes text instead)")
    parser.add_argument("tokens", nargs="*", metavar="TOKEN", help="GPT-2 token ids, 0 <= id < vocab size")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="PATH",
                        help=f"llm.c checkpoint, version 1, 3 or 5 (default: {DEFAULT_MODEL})")
    parser.add_argument("-n", type=int, default=10, metavar="N",
                        help="tokens in total, the input included (default: 10, as gpt.c)")
    parser.add_argument("--backend", choices=list(BACKENDS), default="parallel",
                        help="kernels to run: parallel (default); serial, llm.c's reference, "
                             "which always recomputes as gpt.c does; cuda, on an NVIDIA GPU")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), metavar="K",
                        help=f"parallel backend: a static pool of K workers (default: the {os.cpu_count()} cores)")
    parser.add_argument("--recompute", action="store_true",
                        help="run the whole prefix every step, as gpt.c does, instead of using a KV cache")
    parser.add_argument("--profile", action="store_true",
                        help="print the time spent in each kernel on stderr at the end")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"-n must be at least 1, not {args.n}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, not {args.threads}")
    return parser, args


def run(argv):
    parser, args = parse_args(argv)
    # gpt.c's own checks and messages, kept exactly
    if not args.tokens:
        print("Provide at least one token.", file=sys.stderr)
        return 1
    if len(args.tokens) > args.n - 1:
        print("Too many tokens.", file=sys.stderr)
        return 1
    for text in args.tokens:
        if not re.fullmatch(r"-?[0-9]+", text):
            parser.error(f"token {text!r} is not an integer")
        if int(text) < 0:
            parser.error(f"token {text} is negative; token ids are 0 or more")
    tokens = [int(text) for text in args.tokens]

    try:
        checkpoint = load_checkpoint(args.model)
    except CheckpointError as e:
        print(f"gpt: error: {e}", file=sys.stderr)
        return 1
    config = checkpoint.config
    for token in tokens:
        if token >= config.vocab_size:
            parser.error(f"token {token} is out of range: {args.model} has a vocabulary of "
                         f"{config.vocab_size} (ids 0..{config.vocab_size - 1})")
    if args.n > config.max_seq_len:
        parser.error(f"-n {args.n} is beyond the model's context of {config.max_seq_len} tokens")

    try:
        kernels = load_backend(args.backend, args.threads)
    except ValueError as e:  # no GPU, or more threads than numba allows
        print(f"gpt: error: {e}", file=sys.stderr)
        return 2
    if args.profile:
        kernels = ProfiledKernels(kernels)
    recompute = args.recompute or args.backend == "serial"
    for token in generate(kernels, checkpoint, tokens, args.n, recompute):
        print(token, flush=True)  # callers read tokens as they come
    if args.profile:
        print(kernels.report(), file=sys.stderr)
    return 0


def main(argv=None):
    try:
        return run(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader left (gpt ... | head -1): not an error; point stdout at /dev/null so
        # that the interpreter's final flush does not complain either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

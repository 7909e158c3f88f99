"""gpt: complete a sequence of GPT-2 token ids, as gpt.c does.

    gpt 31373 612          # "hello there" -> 8 more token ids, one per line

n = 10 tokens in total, the input included. Each step samples the next token from the
last position's distribution with gpt.c's fixed coin of 0.5. gpt.c runs the forward pass
over all the tokens so far every step (--recompute, and always the serial backend); by
default the prompt runs once and each step runs only its new position against a KV
cache: the same tokens. Tokens go to stdout as they come; everything else to stderr.

The command line only: the model, its generation loop and the sampler are model.py's
and sampler.py's. numpy and numba are imported inside run(), after cli.command() has
taken over Ctrl-C and SIGTERM.
"""

import sys

if __name__ == "__main__" and not __package__:  # `python gpt.py` in a checkout
    from _checkout import run_as_package
    sys.exit(run_as_package("gpt"))

from . import backends, cli  # noqa: E402  (after the checkout's bootstrap above; standard library only)
from .errors import Failure  # noqa: E402


def parse_args(argv):
    parser = cli.ArgumentParser(
        prog="gpt",
        description="Complete a sequence of GPT-2 token ids to N tokens in total, as gpt.c does (or with N "
                    "new tokens: --max-new-tokens): one new token id per line on stdout.",
        epilog="exit codes: 0 done; 1 gpt.c's two errors, or a bad model file or an unwritable stdout; "
               "2 a bad argument; 130 Ctrl-C, 143 SIGTERM; 141 stdout's reader left. "
               "example: gpt 31373 612   (\"hello there\"; chat.py takes text instead)")
    parser.add_argument("tokens", nargs="*", metavar="TOKEN", help="GPT-2 token ids, 0 <= id < vocab size")
    parser.add_argument("-n", type=cli.integer(1, 2**31 - 1), metavar="N",
                        help="tokens in total, the input included (default: 10, as gpt.c)")
    parser.add_argument("--max-new-tokens", type=cli.integer(1, 2**31 - 1), metavar="N",
                        help="instead of -n: N new tokens after the input, whatever its length, up to the "
                             "model's context")
    parser.add_argument("--recompute", action="store_true",
                        help="run the whole prefix every step, as gpt.c does, instead of using a KV cache")
    parser.add_argument("--profile", action="store_true",
                        help="print the time spent in each kernel, and the pool's size, on stderr at the end")
    parser.add_argument("--stdin", action="store_true",
                        help="load the model once, then complete each line of standard input (token ids "
                             "separated by spaces): the new ids one per line, then an empty line; a bad "
                             "line gets one error line on stderr and an empty completion. A line that "
                             "starts with + continues the last completion's context (kept in the KV cache)")
    cli.add_generation_options(parser)
    return parser, parser.parse_args(argv)


MAX_LINE = (1 << 16) + 1  # bytes of a --stdin request and its newline; a context of 1024 ids is under 7 KB


def run(argv):
    parser, args = parse_args(argv)
    if args.stdin and args.tokens:
        parser.error("--stdin reads the token ids from standard input, not from the command line")
    if args.n is not None and args.max_new_tokens is not None:
        parser.error("give -n (tokens in total, as gpt.c) or --max-new-tokens (new tokens), not both")
    if args.max_new_tokens is None and args.n is None:
        args.n = 10  # gpt.c's
    if not args.stdin:  # gpt.c's own checks and messages, kept exactly
        if not args.tokens:
            print("Provide at least one token.", file=sys.stderr)
            return 1
        if args.n is not None and len(args.tokens) > args.n - 1:
            print("Too many tokens.", file=sys.stderr)
            return 1
    tokens = [parse_token(text) for text in args.tokens]
    if args.stdin and sys.stdin is None:
        raise Failure("--stdin: standard input is closed")
    if problem := backends.dtype_problem(args.backend, args.dtype):  # before the backend's slow import
        parser.error(f"{problem}; use --dtype fp32")
    if problem := backends.kv_dtype_problem(args.backend, args.kv_dtype):
        parser.error(f"{problem}; use --kv-dtype fp32")
    cli.flush_stdout()  # stdout closed or full: say so before the model is loaded

    try:
        backend = backends.load(args.backend, args.threads)
    except ValueError as e:  # no GPU, or more threads than numba allows
        raise Failure(str(e), code=2) from None
    if backend.cache_problem:
        cli.say(f"gpt: {backend.cache_problem}")
    elif not backends.compiled_here(backend):
        cli.say("gpt: a first run on this CPU: compiling the kernels into numba's cache, once "
                "(up to a minute; later runs load them)")
    from .bus_error import say_bus_errors
    from .checkpoint import MissingCheckpoint
    from .model import Generator, ProfiledKernels
    say_bus_errors("gpt")  # the model file is mapped: it may shrink under us
    try:
        checkpoint = backend.load_checkpoint(args.model, args.dtype)
    except MissingCheckpoint as e:
        raise Failure(f"{e}; `make model` downloads GPT-2 124M, or pass --model PATH") from None
    config = checkpoint.config
    if args.n is not None and args.n > config.max_seq_len:
        parser.error(f"-n {args.n} is beyond the model's context of {config.max_seq_len} tokens")
    check_vocabulary(args, args.tokens, tokens, config)
    if args.max_new_tokens is not None and not args.stdin:
        check_room(len(tokens), config)
        if len(tokens) + args.max_new_tokens > config.max_seq_len:
            cli.say(f"gpt: {config.max_seq_len - len(tokens)} new tokens, not {args.max_new_tokens}: the model's "
                    f"context is {config.max_seq_len} tokens")

    from .sampler import Sampler
    kernels = ProfiledKernels(backend.kernels) if args.profile else backend.kernels
    sampler = Sampler(args.temperature, args.top_k, args.top_p, args.seed)
    # the most tokens a completion holds: -n's, or the prompt and its new tokens, or (for
    # --stdin's varied prompts and continued contexts) the whole context
    positions = args.n or (config.max_seq_len if args.stdin else min(len(tokens) + args.max_new_tokens,
                                                                        config.max_seq_len))
    from .dtypes import default_kv_dtype
    model = Generator(kernels, checkpoint, positions, args.recompute or args.backend == "serial", sampler,
                      args.kv_dtype or default_kv_dtype(checkpoint.dtype))
    code = serve(model, args) if args.stdin else complete(model, tokens, total(args, len(tokens), config))
    if args.profile:
        cli.say(kernels.report())
        cli.say(pool_line(backend))
    return code


def pool_line(backend):
    """--profile's last line: the pool the kernels ran on, as numba reports it."""
    if backend.name == "cuda":
        return "pool: none (the GPU's own threads)"
    import numba
    return f"pool: {numba.get_num_threads()} workers"


def total(args, context, config):
    """The tokens a context of `context` tokens is completed to: -n's total, or
    --max-new-tokens more, within the model's context."""
    return args.n if args.n is not None else min(context + args.max_new_tokens, config.max_seq_len)


def check_room(held, config):
    """A context of `held` tokens that leaves room for a new one in the model's."""
    if held >= config.max_seq_len:
        raise Failure(f"{held} tokens fill the model's context of {config.max_seq_len}: no room for a new one",
                      code=2)


def complete(model, tokens, n, more=False):
    for token in model.complete(tokens, n, more):
        cli.out(f"{token}\n")  # flushed: callers read tokens as they come
    return 0


def serve(model, args):
    """--stdin: a completion for each line, ended by an empty line; 1 if any line failed.
    A bad line is said and answered empty (and leaves the context as it was); a failure
    to write the answers ends gpt. A line that starts with "+" continues the context of
    the last completion (its prompt and its tokens, all of them even if it was cut
    short); with no completion before, it starts one."""
    failed = False
    while line := sys.stdin.buffer.readline(MAX_LINE):
        try:
            tokens, more = parse_request(line, args, model)
        except Failure as e:
            cli.say(f"gpt: error: {e}")
            failed, tokens, more = True, [], False
        if tokens or more:
            held = (model.context if more else 0) + len(tokens)
            complete(model, tokens, total(args, held, model.config), more)
        cli.out("\n")
    return 1 if failed else 0


def parse_request(line, args, model):
    """(token ids, whether they continue the context) of a --stdin line, checked as gpt's
    command line checks them, counting the context they continue."""
    if not line.endswith(b"\n") and len(line) >= MAX_LINE:
        while (rest := sys.stdin.buffer.readline(MAX_LINE)) and not rest.endswith(b"\n"):
            pass
        raise Failure(f"a request of over {MAX_LINE - 1} bytes")
    text = line.decode("utf-8", errors="replace").strip()
    more = text.startswith("+") and model.context > 0
    texts = text.removeprefix("+").split()
    if not texts and not more:
        raise Failure("no token ids on the line")
    tokens = [parse_token(text) for text in texts]
    check_vocabulary(args, texts, tokens, model.config)
    held = (model.context if more else 0) + len(tokens)  # the context the completion starts from
    if args.n is not None and held > args.n - 1:
        raise Failure(f"{held} tokens: -n {args.n} takes at most {args.n - 1}")
    check_room(held, model.config)
    return tokens, more


def parse_token(text):
    """A token id as an int, or float('inf') for one too long to be an id of any model."""
    digits = text.removeprefix("-")
    if not (digits.isdecimal() and digits.isascii()):
        raise Failure(f"token {cli.shorten(text)!r} is not an integer", code=2)
    if text.startswith("-"):
        raise Failure(f"token {cli.shorten(text)} is negative; token ids are 0 or more", code=2)
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else float("inf")


def check_vocabulary(args, texts, tokens, config):
    for text, token in zip(texts, tokens):
        if token >= config.vocab_size:
            raise Failure(f"token {cli.shorten(text)} is out of range: "
                          f"{args.model} has a vocabulary of {config.vocab_size} "
                          f"(ids 0..{config.vocab_size - 1})", code=2)


main = cli.command("gpt", run)

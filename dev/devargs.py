"""The arguments every dev/ script takes: the model and the pool size K."""

import argparse


def parse(doc, more=()):
    """Parses --model and --threads (and `more`: (flag, kwargs) pairs) for a script whose
    docstring is `doc`; sets the parallel backend's pool to K. Returns the arguments, with
    the backend's kernels as `kernels`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random_124M.bin", help="llm.c checkpoint (default: random_124M.bin, "
                        "from `make random-model`)")
    parser.add_argument("--threads", "-K", type=int, default=2, help="the parallel backend's pool size K (default: 2)")
    for flag, kwargs in more:
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args()
    from gptpy import backends
    args.kernels = backends.load("parallel", args.threads).kernels
    return args


def at_least_one(text):
    """An argparse type: a whole number from 1 (a count of rounds or runs, whose median
    is taken)."""
    import argparse
    if not (text.isascii() and text.isdecimal() and 0 < len(text) < 7 and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number from 1 to 999999")
    return int(text)


def median_us(f, rounds):
    """The median time of `rounds` calls of f(), after one, in microseconds."""
    import statistics
    import time
    f()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)

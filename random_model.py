"""Seeded random GPT-2 models of any shape, for tests and benchmarks where GPT-2's own
weights cannot be downloaded: drawn a piece at a time, the stream that
checkpoint.write_checkpoint takes, so that even GPT-2 XL's shape needs under 200 MB.
"""

import numpy as np

from .checkpoint import bf16_to_float32, float32_to_bf16, parameter_table

ROWS_PER_PIECE = 1024  # of wte and wpe, drawn and written at a time


def random_pieces(config, seed=0, confident=False):
    """Yields (name, piece) in file order (checkpoint.write_checkpoint's stream): seeded
    GPT-2-like parameters. The values do not depend on how they are cut into pieces: one
    generator draws them all in file order.

    Departures from GPT-2's init, each for the tests' sake: noise on the layernorms, so
    that a kernel that swaps weight and bias shows; residual projections 5x larger and
    small biases, so that the blocks, not the (tied) token embedding, decide the next
    token; values rounded to bfloat16, so that versions 1, 3 and 5 of one seed hold the
    same numbers. A random GPT-2 predicts almost uniformly and fixed-coin sampling then
    flips on the last bit: `confident` raises the final layernorm gain until the logits
    have a standard deviation of about 20, and one token takes nearly all the probability."""
    rng = np.random.default_rng(seed)
    C = config.channels

    def draw(name, shape):  # in place, float32 throughout: one array of the piece's size
        x = rng.standard_normal(shape, dtype=np.float32)
        if name in ("ln1w", "ln2w", "lnfw"):
            x *= 0.1
            x += 1.0
        elif name in ("attprojw", "fcprojw"):
            x *= 0.1
        elif name == "wpe":
            x *= 0.01
        elif name.endswith("b"):  # the biases
            x *= 0.002
        else:  # wte, qkvw, fcw
            x *= 0.02
        if name == "lnfw" and confident:
            # a logit is lnf(x) . wte[v]: about gain * 0.02 * sqrt(C) in standard deviation
            x *= np.float32(20.0 / (0.02 * np.sqrt(C)))
        return bf16_to_float32(float32_to_bf16(x))

    for name, shape in parameter_table(config):
        if name in ("wte", "wpe"):  # wte drawn unpadded: the padding does not change the model
            rows = config.vocab_size if name == "wte" else shape[0]
            for lo in range(0, rows, ROWS_PER_PIECE):
                yield name, draw(name, (min(ROWS_PER_PIECE, rows - lo), C))
            if name == "wte" and config.padded_vocab_size > rows:  # llm.c pads with zeros
                yield name, np.zeros((config.padded_vocab_size - rows, C), np.float32)
        elif len(shape) == 1:
            yield name, draw(name, shape)
        else:  # one layer at a time
            for _ in range(shape[0]):
                yield name, draw(name, shape[1:])


def random_params(config, seed=0, confident=False):
    """random_pieces' tensors whole, name -> float32 array: for small models (tests)."""
    shapes, pieces = dict(parameter_table(config)), {}
    for name, piece in random_pieces(config, seed, confident):
        pieces.setdefault(name, []).append(piece if piece.ndim == len(shapes[name]) else piece[None])
    return {name: np.concatenate(pieces[name]) for name in shapes}


def largest_piece_bytes(config):
    """Memory the generator needs at once: its largest piece, drawn (4 bytes a value),
    rounded to bfloat16 (4 + 2) and widened back (4)."""
    C = config.channels
    return 14 * max(4 * C * C, ROWS_PER_PIECE * C)

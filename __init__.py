"""gpt.py: GPT-2 text completion on the CPU, a numba port of gpt.c (llm.c's inference).

The repository's root is this package, gptpy: `gpt.py`, `chat.py`, `serial/`,
`parallel/` and `gpu/` stand at the top of a checkout and install as gptpy.gpt,
gptpy.chat, gptpy.serial, ... The commands: gpt, gpt-chat, gpt-checkpoint, gpt-convert.
"""

"""Per-kernel time of the recompute job (the gpt.c job, --recompute) for K = 1 and 2."""
import sys
import checkpoint, model
from gpt import generate
K = int(sys.argv[1])
ck = checkpoint.load_checkpoint("random_124M.bin")
k = model.ProfiledKernels(model.load_backend("parallel", K))
list(generate(k, ck, [31373, 612], 10, True))
k.first, k.rest, k.calls = {}, {}, {}
for _ in range(3):
    list(generate(k, ck, [31373, 612], 10, True))
print(f"K={K}, 3 jobs"); print(k.report())

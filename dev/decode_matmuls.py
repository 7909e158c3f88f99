"""Decode (T=1) matmuls of the 124M shape, streamed over all 12 layers: GB/s each."""
import time, numpy as np
import checkpoint, model
kernels = model.load_backend("parallel", 2)
p = checkpoint.load_checkpoint("random_124M.bin").params
L, C = 12, 768
shapes = {"qkvw": (C, 3 * C), "attprojw": (C, C), "fcw": (C, 4 * C), "fcprojw": (4 * C, C)}
x = {n: np.random.default_rng(0).standard_normal((1, 1, ic), dtype=np.float32) for n, (ic, oc) in shapes.items()}
out = {n: np.zeros((1, 1, oc), np.float32) for n, (ic, oc) in shapes.items()}
bias = {n: p[n[:-1] + "b"] for n in shapes}
def one_token():
    for l in range(L):
        for n, (ic, oc) in shapes.items():
            kernels.matmul_forward(out[n], x[n], p[n][l], bias[n][l], 1, 1, ic, oc)
    kernels.matmul_forward(lm_out, x["qkvw"], p["wte"], None, 1, 1, C, 50304)
lm_out = np.zeros((1, 1, 50304), np.float32)
for _ in range(3): one_token()
ts = []
for _ in range(10):
    t0 = time.perf_counter(); one_token(); ts.append(time.perf_counter() - t0)
nbytes = sum(p[n].nbytes for n in shapes) + p["wte"].nbytes
print(f"all matmuls of a token: {1e3*np.median(ts):.1f} ms, {nbytes/np.median(ts)/1e9:.1f} GB/s")
for n, (ic, oc) in shapes.items():
    ts = []
    for _ in range(10):
        t0 = time.perf_counter()
        for l in range(L):
            kernels.matmul_forward(out[n], x[n], p[n][l], bias[n][l], 1, 1, ic, oc)
        ts.append(time.perf_counter() - t0)
    print(f"{n:9s} x12: {1e3*np.median(ts):6.2f} ms {p[n].nbytes/np.median(ts)/1e9:5.1f} GB/s")
ts = []
for _ in range(10):
    t0 = time.perf_counter(); kernels.matmul_forward(lm_out, x["qkvw"], p["wte"], None, 1, 1, C, 50304); ts.append(time.perf_counter() - t0)
print(f"lm head     : {1e3*np.median(ts):6.2f} ms {p['wte'].nbytes/np.median(ts)/1e9:5.1f} GB/s")
t0 = time.perf_counter()
for _ in range(1000): kernels.residual_forward(out["attprojw"][0,0], out["attprojw"][0,0], out["attprojw"][0,0], 768)
print(f"parallel region launch+tiny work: {(time.perf_counter()-t0)*1e3:.3f} us per call")

"""llm.c's forward kernels on an NVIDIA GPU (numba.cuda), with the serial kernels' names
and signatures: each function launches CUDA kernels, and no host code loops over data.

The weights are copied to the device once (`memory.upload`), the activations live there
(`memory.zeros`), and each step copies back only the distribution that sampling needs
(`memory.to_host`). Host arrays passed in also work: numba then copies them to the device
and back around each launch, which is how the tests call single kernels.

Under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) every CUDA thread is a Python
thread, so the blocks are made smaller there: same code, same results, less waiting.
"""

import math
import sys
import threading

import numpy as np
from numba import config, cuda, float32, types

SIMULATED = config.ENABLE_CUDASIM


def _lock_simulator_shared_arrays():
    """numba's simulator allocates a block's shared array on first use with an unlocked
    check-then-set (simulator.kernelapi.FakeCUDAShared.array): two threads that both miss
    get different arrays, and a reduction over "shared" memory silently goes wrong (seen
    here: wrong tokens in 1 run of 4). The same allocation, keyed by the kernel's source
    line as the simulator keys it, under a lock."""
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    lock, unlocked = threading.Lock(), kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: one buffer, nothing to race on
            return unlocked(self, shape, dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            if key not in self._allocations:
                dtype = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype
                self._allocations[key] = np.empty(shape, dtype)
            return self._allocations[key]

    kernelapi.FakeCUDAShared.array = array


if SIMULATED:
    # The simulator runs each CUDA thread as a Python thread, and a syncthreads waits for
    # all of a block's threads to take the GIL in turn: at Python's default switch
    # interval (5 ms) each barrier costs ~10 ms, and runs take many times longer.
    sys.setswitchinterval(1e-6)
    _lock_simulator_shared_arrays()
THREADS = 32 if SIMULATED else 256  # threads per block of the row kernels (a power of 2)
TILE = 4 if SIMULATED else 16  # the matmul's tiles are TILE x TILE
GELU_SCALING_FACTOR = float32(math.sqrt(2.0 / math.pi))


def _grid(n, threads=THREADS):
    return (n + threads - 1) // threads


def _on_device(array):
    """Token ids arrive from the host each step: a copy of a few bytes."""
    return cuda.to_device(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array


SUM, MAX = False, True  # what _block_reduce computes


@cuda.jit(device=True)
def _block_reduce(shared, value, take_max):
    """The sum (or the max) of `value` over the block's threads: a tree in shared memory."""
    tid = cuda.threadIdx.x
    shared[tid] = value
    cuda.syncthreads()
    stride = THREADS // 2
    while stride > 0:
        if tid < stride:
            other = shared[tid + stride]
            shared[tid] = max(shared[tid], other) if take_max else shared[tid] + other
        cuda.syncthreads()
        stride //= 2
    result = shared[0]
    cuda.syncthreads()  # shared is reused by the next reduction
    return result


def encoder_forward(out, inp, wte, wpe, B, T, C):
    """serial.encoder_forward; a thread per output element."""
    _encoder_forward[_grid(B * T * C), THREADS](out, _on_device(inp), wte, wpe, B, T, C)


@cuda.jit
def _encoder_forward(out, inp, wte, wpe, B, T, C):
    idx = cuda.grid(1)
    if idx < B * T * C:
        b, t, i = idx // (T * C), (idx // C) % T, idx % C
        out[b, t, i] = wte[inp[b, t], i] + wpe[t, i]


def layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
    """serial.layernorm_forward; a block per position, its sums reduced in shared memory."""
    _layernorm_forward[B * T, THREADS](out, mean, rstd, inp, weight, bias, B, T, C)


@cuda.jit
def _layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
    shared = cuda.shared.array(THREADS, float32)
    b, t, tid = cuda.blockIdx.x // T, cuda.blockIdx.x % T, cuda.threadIdx.x
    partial = float32(0.0)
    for i in range(tid, C, THREADS):
        partial += inp[b, t, i]
    m = _block_reduce(shared, partial, SUM) / float32(C)
    partial = float32(0.0)
    for i in range(tid, C, THREADS):
        xshift = inp[b, t, i] - m
        partial += xshift * xshift
    v = _block_reduce(shared, partial, SUM) / float32(C)
    s = float32(1.0) / math.sqrt(v + float32(1e-5))
    for i in range(tid, C, THREADS):
        out[b, t, i] = s * (inp[b, t, i] - m) * weight[i] + bias[i]
    if tid == 0:
        mean[b, t] = m
        rstd[b, t] = s


def matmul_forward(out, inp, weight, bias, B, T, C, OC):
    """serial.matmul_forward in shared-memory tiles: a block computes TILE positions x TILE output channels, staging
    TILE-wide slices of both operands in shared memory so each is read once per block."""
    grid = (_grid(OC, TILE), _grid(B * T, TILE))
    has_bias = bias is not None
    _matmul_forward[grid, (TILE, TILE)](out, inp, weight, bias if has_bias else weight[0], has_bias, B, T, C, OC)


@cuda.jit
def _matmul_forward(out, inp, weight, bias, has_bias, B, T, C, OC):
    xs = cuda.shared.array((TILE, TILE), float32)  # inp[row, k0:k0+TILE] of the block's rows
    ws = cuda.shared.array((TILE, TILE), float32)  # weight[col, k0:k0+TILE] of its channels
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty  # b * T + t
    col = cuda.blockIdx.x * TILE + tx  # the output channel
    wrow = cuda.blockIdx.x * TILE + ty  # the channel whose weights this thread stages
    acc = float32(0.0)
    for k0 in range(0, C, TILE):
        k = k0 + tx  # consecutive threads read consecutive addresses
        xs[ty, tx] = inp[row // T, row % T, k] if row < B * T and k < C else float32(0.0)
        ws[ty, tx] = weight[wrow, k] if wrow < OC and k < C else float32(0.0)
        cuda.syncthreads()
        for kk in range(TILE):
            acc += xs[ty, kk] * ws[tx, kk]
        cuda.syncthreads()
    if row < B * T and col < OC:
        out[row // T, row % T, col] = acc + (bias[col] if has_bias else float32(0.0))


def attention_forward(out, preatt, att, inp, B, T, C, NH):
    """serial.attention_forward; a block per (batch, query, head):
    its threads share the keys, and the softmax's max and sum are reduced in shared memory."""
    Tq = out.shape[1]
    scale = np.float32(1.0 / math.sqrt(np.float32(C // NH)))
    _attention_forward[B * Tq * NH, THREADS](out, preatt, att, inp, B, T, Tq, C, NH, scale)


@cuda.jit
def _attention_forward(out, preatt, att, inp, B, T, Tq, C, NH, scale):
    shared = cuda.shared.array(THREADS, float32)
    h, tq, b = cuda.blockIdx.x % NH, (cuda.blockIdx.x // NH) % Tq, cuda.blockIdx.x // (NH * Tq)
    tid, hs = cuda.threadIdx.x, C // NH
    t = T - Tq + tq
    q, k, v = h * hs, C + h * hs, 2 * C + h * hs
    # pass 1: query . key, a thread per key
    local_max = float32(-math.inf)
    for t2 in range(tid, t + 1, THREADS):
        val = float32(0.0)
        for i in range(hs):
            val += inp[b, t, q + i] * inp[b, t2, k + i]
        val *= scale
        preatt[b, h, tq, t2] = val
        local_max = max(local_max, val)
    maxval = _block_reduce(shared, local_max, MAX)
    # pass 2: exp and its sum
    partial = float32(0.0)
    for t2 in range(tid, t + 1, THREADS):
        expv = math.exp(preatt[b, h, tq, t2] - maxval)
        att[b, h, tq, t2] = expv
        partial += expv
    expsum = _block_reduce(shared, partial, SUM)
    expsum_inv = float32(0.0) if expsum == 0.0 else float32(1.0) / expsum
    # pass 3: normalize; the causal mask zeroes the future
    for t2 in range(tid, T, THREADS):
        att[b, h, tq, t2] = att[b, h, tq, t2] * expsum_inv if t2 <= t else float32(0.0)
    cuda.syncthreads()  # every thread reads all of att below
    # pass 4: the attention-weighted sum of the values, a thread per channel of the head
    for i in range(tid, hs, THREADS):
        acc = float32(0.0)
        for t2 in range(t + 1):
            acc += att[b, h, tq, t2] * inp[b, t2, v + i]
        out[b, tq, q + i] = acc


def gelu_forward(out, inp, N):
    """serial.gelu_forward; a thread per element."""
    _gelu_forward[_grid(N), THREADS](out, inp, N)


@cuda.jit
def _gelu_forward(out, inp, N):
    i = cuda.grid(1)
    if i < N:
        x = inp[i]
        cube = float32(0.044715) * x * x * x
        out[i] = float32(0.5) * x * (float32(1.0) + math.tanh(GELU_SCALING_FACTOR * (x + cube)))


def residual_forward(out, inp1, inp2, N):
    """serial.residual_forward; a thread per element."""
    _residual_forward[_grid(N), THREADS](out, inp1, inp2, N)


@cuda.jit
def _residual_forward(out, inp1, inp2, N):
    i = cuda.grid(1)
    if i < N:
        out[i] = inp1[i] + inp2[i]


def fused_residual_forward(residual, normed, mean, rstd, inp1, inp2, weight, bias, N, C):
    """serial.fused_residual_forward, as its definition: residual_forward, then
    layernorm_forward (two launches)."""
    residual_forward(residual.reshape(N * C), inp1.reshape(N * C), inp2.reshape(N * C), N * C)
    layernorm_forward(normed.reshape(1, N, C), mean.reshape(1, N), rstd.reshape(1, N), residual.reshape(1, N, C),
                      weight, bias, 1, N, C)


def softmax_forward(probs, logits, B, T, V, Vp):
    """serial.softmax_forward; a block per row, its max and sum reduced in shared memory."""
    _softmax_forward[B * T, THREADS](probs, logits, B, T, V, Vp)


@cuda.jit
def _softmax_forward(probs, logits, B, T, V, Vp):
    shared = cuda.shared.array(THREADS, float32)
    b, t, tid = cuda.blockIdx.x // T, cuda.blockIdx.x % T, cuda.threadIdx.x
    local_max = float32(-math.inf)
    for i in range(tid, V, THREADS):
        local_max = max(local_max, logits[b, t, i])
    maxval = _block_reduce(shared, local_max, MAX)
    partial = float32(0.0)
    for i in range(tid, V, THREADS):
        e = math.exp(logits[b, t, i] - maxval)
        probs[b, t, i] = e
        partial += e
    total = _block_reduce(shared, partial, SUM)
    for i in range(tid, Vp, THREADS):
        probs[b, t, i] = probs[b, t, i] / total if i < V else float32(0.0)


class memory:
    """Where this backend's kernels find their data: the GPU's memory."""

    @staticmethod
    def upload(params):
        """The weights, copied to the device once."""
        return {name: cuda.to_device(np.ascontiguousarray(array)) for name, array in params.items()}

    @staticmethod
    def zeros(n):
        return cuda.to_device(np.zeros(n, dtype=np.float32))

    @staticmethod
    def to_host(array):
        return array.copy_to_host()

    @staticmethod
    def synchronize():
        cuda.synchronize()

"""The CPU numba compiles the kernels for: the host's, with 512-bit vectors wherever it has
AVX-512. Imported for that effect, before anything is compiled, by the modules that
compile code (weights.py, which the kernels import, and bus_error.py).

LLVM's tuning for Intel's AVX-512 cores (skylake-avx512 to graniterapids, icelake,
rocketlake) includes `prefer-256-bit` (512-bit instructions lowered the clock of the
first of them): numba's loops, and LLVM IR written with 16 float32 lanes, then compile
to 256-bit registers, half the width the kernels were written for. AMD's Zen 4 and 5
carry no such preference. So where numba targets the host (neither NUMBA_CPU_NAME nor
NUMBA_CPU_FEATURES set: those are the user's choice and stand) and the host has
AVX-512, its features get `-prefer-256-bit`. numba keys its cache on the features, so
kernels compiled before this change are not loaded for it
(`dev/matmul/vector_width.py` measures what it does).
"""

from numba.core import config


def host_features(detected):
    """numba's target features for a host whose LLVM-detected features are `detected`
    (llvmlite's "+avx2,-avx512f,..." string): the same, with `-prefer-256-bit` where
    `+avx512f` is among them."""
    return detected + ",-prefer-256-bit" if "+avx512f" in detected.split(",") else detected


def _target_the_host_whole():
    if config.CPU_NAME is None and config.CPU_FEATURES is None:
        from llvmlite import binding
        try:
            detected = binding.get_host_cpu_features().flatten()
        except RuntimeError:  # a host LLVM cannot ask: numba's own choice stands
            return
        config.CPU_FEATURES = host_features(detected)


_target_the_host_whole()

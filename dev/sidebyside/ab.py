"""A/B of two git revisions of the whole package, interleaved: each revision is exported
whole (`git archive`) into a folder of its own and runs as a resident `gpt --stdin`
from there (its own kernels, forward pass and sampler, compiled into its own cache);
requests alternate between the two, and each is timed from the request's line to the
answer's end. Prints the median ms per request and per new token, and B's speed-up.

    python dev/sidebyside/ab.py REV_A [REV_B] [--model M] [--threads K] [--dtype D] [-n N] [--rounds R]

REV_B defaults to the working tree as it is (uncommitted changes included). A revision
needs `gpt --stdin` (every revision since the resident gpt).
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("a", metavar="REV_A", help="a git revision: a commit, a tag, HEAD~3, ...")
parser.add_argument("b", metavar="REV_B", nargs="?", help="another (default: the working tree)")
parser.add_argument("--model", default="random_124M.bin", help="llm.c checkpoint (default: random_124M.bin)")
parser.add_argument("--threads", "-K", type=int, default=2, help="pool size K (default: 2)")
parser.add_argument("--dtype", default=None, help="--dtype for both (default: the file's own)")
parser.add_argument("-n", type=int, default=64, help="tokens in total per request (default: 64: 62 decode steps)")
parser.add_argument("--rounds", type=int, default=15, help="timed requests per revision (default: 15)")
parser.add_argument("--prompt", default="31373 612", help="the request's token ids (default: 31373 612)")
args = parser.parse_args()


def export(rev, folder):
    """The package at `rev` (None: the working tree) in `folder`."""
    if rev is None:
        shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns(".git", ".venv", "*.bin", "__pycache__"))
        return
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    folder.mkdir()
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)


def start(folder):
    command = [sys.executable, str(folder / "gpt.py"), "--stdin", "--model", str(Path(args.model).resolve()),
               "--threads", str(args.threads), "-n", str(args.n), *(["--dtype", args.dtype] if args.dtype else [])]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=folder)


def request(proc):
    """Seconds from the request to the end of its answer, and the answer's ids."""
    start_time = time.perf_counter()
    proc.stdin.write((args.prompt + "\n").encode())
    proc.stdin.flush()
    ids = []
    while (line := proc.stdout.readline()) not in (b"\n", b""):
        ids.append(int(line))
    if line == b"":
        sys.exit(f"ab.py: a gpt ended early (exit {proc.wait()})")
    return time.perf_counter() - start_time, ids


with tempfile.TemporaryDirectory() as tmp:
    names = {"A": args.a, "B": args.b or "working tree"}
    procs = {}
    for label, rev in (("A", args.a), ("B", args.b)):
        export(rev, Path(tmp) / label)
        procs[label] = start(Path(tmp) / label)
    answers = {label: [request(proc)[1] for _ in range(2)][-1] for label, proc in procs.items()}  # compile, warm
    times = {label: [] for label in procs}
    for _ in range(args.rounds):
        for label, proc in procs.items():
            seconds, ids = request(proc)
            times[label].append(seconds)
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    new_tokens = len(answers["A"])
    for label in procs:
        median = statistics.median(times[label])
        print(f"{label} ({names[label]}): {1e3 * median:.1f} ms per request, "
              f"{1e3 * median / max(new_tokens, 1):.2f} ms per new token (median of {args.rounds})")
    print(f"B / A speed-up: {statistics.median(times['A']) / statistics.median(times['B']):.3f}x; "
          f"the same tokens: {answers['A'] == answers['B']}")

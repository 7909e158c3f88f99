"""Hostile input, second round: the environment's edges (CPU affinity, NUMBA_NUM_THREADS,
a numba cache that cannot be written), closed standard streams, signals that arrive
while the command is already on its way out, and chat's exit code. Each case runs the
real command and gets one line on stderr and a documented exit code."""

import itertools
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import SMALL, VOCAB_50257, command, one_error_line, run_cli


def cli(name, *args, **kwargs):
    return run_cli(command(name), *args, **kwargs)


def shell(line, **kwargs):
    """A command line run by bash, for what subprocess cannot say (`<&-`, `2>&-`)."""
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=120, **kwargs)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr + done.stdout
    return done


def gpt_line(*args):
    return " ".join([*command("gpt"), *map(str, args)])


# ----------------------------------------------------------------------------
# the pool when no --threads is given: the CPUs this process may use

def one_cpu():
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


@pytest.mark.parametrize("name", ["gpt", "gpt-chat"])
def test_one_allowed_cpu_is_a_pool_of_one(make_model, name):
    """Under taskset -c 0 (or a container's cpuset of one CPU), the default pool is one
    worker, where numba also allows one: no "--threads 2 is more than ..." error."""
    model = make_model(VOCAB_50257, confident=True)
    args = ["--profile", "31373", "612"] if name == "gpt" else ["--once", "hello there"]
    done = subprocess.run([*command(name), "--model", str(model), *args], capture_output=True, text=True,
                          preexec_fn=one_cpu, timeout=120)
    assert done.returncode == 0, done.stderr
    if name == "gpt":
        assert done.stderr.splitlines()[-1] == "pool: 1 workers"


def test_numba_num_threads_bounds_the_default_pool(make_model):
    done = cli("gpt", "--model", make_model(), "--profile", "1", "2", env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stderr.splitlines()[-1] == "pool: 1 workers", done.stderr


@pytest.mark.parametrize("value", ["abc", "0", "-1", "", " ", "1.5", "9" * 5000, "\u0663"])
@pytest.mark.parametrize("name", ["gpt", "gpt-chat"])
def test_numba_num_threads_that_is_no_number(make_model, name, value):
    """numba itself prints a traceback inside a warning and goes on; here one line, exit 2
    (chat: its gpt's line, and chat's exit 1)."""
    model = make_model(VOCAB_50257)
    args = ["1", "2"] if name == "gpt" else ["--once", "hello"]
    done = cli(name, "--model", model, *args, env={**os.environ, "NUMBA_NUM_THREADS": value})
    assert done.returncode == (2 if name == "gpt" else 1) and done.stdout.strip() == "", done.stderr
    line, = done.stderr.splitlines()
    assert line.startswith("gpt: error: NUMBA_NUM_THREADS=") and "is not a number of threads" in line, line
    assert len(line) < 150  # 5,000 digits are shortened


# ----------------------------------------------------------------------------
# closed standard streams: stdout carries only tokens, always

def test_stdin_closed_for_stdin_requests(make_model):
    done = shell(gpt_line("--model", make_model(), "--stdin") + " <&-")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "gpt: error: --stdin: standard input is closed\n"


@pytest.mark.parametrize("args,code", [(["1", "2"], 0), (["1", "x"], 2), (["--stdin"], 1)])
def test_stderr_closed_leaves_stdout_to_the_tokens(make_model, args, code):
    """With fd 2 closed, an error is said nowhere, never into the token stream."""
    model = make_model(confident=True)
    done = shell(gpt_line("--model", model, *args) + " 2>&-", input="x\n")  # a bad request for --stdin
    alone = cli("gpt", "--model", model, "1", "2").stdout
    expected = alone if code == 0 else "\n" if args == ["--stdin"] else ""  # --stdin: the empty answer
    assert done.returncode == code and done.stdout == expected, done.stdout


def test_chat_with_stderr_closed(make_model, tmp_path):
    """chat's gpt has no stderr either: its error line goes nowhere, chat's stdout stays
    text, and chat says the failure by its exit code."""
    done = shell(" ".join([*command("gpt-chat"), "--model", str(tmp_path / "missing.bin"), "--once", "hi"]) + " 2>&-")
    assert (done.returncode, done.stdout) == (1, "")


def test_a_file_opened_with_fds_closed_gets_none_of_their_numbers(make_model, tmp_path):
    """Started with fds 1 and 2 closed, a writer's output file must not become fd 1 or 2
    (where C code's prints would land in it): the model written is byte for byte the one
    a normal run writes."""
    out, reference = tmp_path / "a.bin", tmp_path / "b.bin"
    line = " ".join([*command("gpt-checkpoint"), "random", str(out), "--shape", "tiny"])
    assert shell(line + " >&- 2>&-").returncode == 0
    assert cli("gpt-checkpoint", "random", reference, "--shape", "tiny").returncode == 0
    assert out.read_bytes() == reference.read_bytes()


# ----------------------------------------------------------------------------
# signals that arrive while the command is already on its way out

def running(args, name="gpt"):
    proc = subprocess.Popen([*command(name), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline().strip()  # generating
    return proc


@pytest.mark.parametrize("first,second", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM),
                                          (signal.SIGHUP, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)])
def test_a_second_signal_on_the_way_out_changes_nothing(make_model, first, second):
    """Two signals microseconds apart, many times over: one decides the line and the
    code, as one: the first, unless both are pending when the process next runs (a busy
    machine), where Linux hands over the lower-numbered first; the other, arriving while
    that line is said or during the interpreter's shutdown, is no traceback, no second
    line and no other death."""
    model = make_model(dataclass_replace(SMALL, max_seq_len=1024), confident=True)
    words = {signal.SIGINT: "interrupted", signal.SIGTERM: "stopped by SIGTERM", signal.SIGHUP: "stopped by SIGHUP"}
    outcomes = {(128 + s, f"gpt: {words[s]}\n") for s in (first, second)}
    for delay in (0, 0, 0, 0.0005, 0.002, 0.01):
        proc = running(["--model", model, "--backend", "serial", "-n", "1024", "1"])
        os.kill(proc.pid, first)
        time.sleep(delay)
        os.kill(proc.pid, second)
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err.decode()) in outcomes, (delay, proc.returncode, err.decode())


def dataclass_replace(config, **changes):
    import dataclasses
    return dataclasses.replace(config, **changes)


# ----------------------------------------------------------------------------
# the writers' temporaries: never a planted name, link or FIFO

@pytest.mark.parametrize("plant", ["symlink", "fifo", "file"])
def test_planted_temporaries_are_never_written_through(tmp_path, plant):
    """Someone who can write to the folder plants the old predictable temporary names,
    `.NAME.tmpPID` for the next hundreds of PIDs, as links to a file of theirs, FIFOs or
    files: the writer neither writes through a link, nor waits on a FIFO, nor leaves NAME
    anything but its own regular file."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    probe = subprocess.Popen(["true"])  # the PIDs the next processes will get follow its
    probe.wait()
    for pid in range(probe.pid + 1, probe.pid + 400):
        name = tmp_path / f".m.bin.tmp{pid}"
        if plant == "symlink":
            name.symlink_to(victim)
        elif plant == "fifo":
            os.mkfifo(name)
        else:
            name.write_bytes(b"planted")
    done = cli("gpt-checkpoint", "random", tmp_path / "m.bin", "--shape", "tiny", timeout=60)
    assert done.returncode == 0, done.stderr
    assert victim.read_bytes() == b"precious"
    out = tmp_path / "m.bin"
    assert out.is_file() and not out.is_symlink() and out.read_bytes()[:4] == (20240326).to_bytes(4, "little")
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_convert_writes_the_pair_or_nothing(make_model, tmp_path):
    """An output that cannot be written (config.json a folder) is found before anything is
    written: model.safetensors is not replaced, and a folder the run made is gone."""
    model = make_model()
    folder = tmp_path / "hf"
    assert cli("gpt-convert", model, folder).returncode == 0
    before = (folder / "model.safetensors").read_bytes()
    (folder / "config.json").unlink()
    (folder / "config.json").mkdir()
    line = one_error_line(cli("gpt-convert", make_model(seed=1), folder), 2)
    assert "config.json: is a directory" in line
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    new = tmp_path / "new" / "hf"
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "hf").write_bytes(b"")  # not a folder: refused, nothing made
    assert cli("gpt-convert", model, new / "inner").returncode != 0
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["hf"]


# ----------------------------------------------------------------------------
# JSON numbers of thousands of digits (Python's int() refuses 4,300 with a traceback)

def test_a_config_number_of_thousands_of_digits(hf, tmp_path):
    text = (hf / "config.json").read_text()
    config = json.loads(text)
    (hf / "config.json").write_text(text.replace(f'"n_embd": {config["n_embd"]}', '"n_embd": ' + "9" * 5000))
    line = one_error_line(cli("gpt-convert", hf, tmp_path / "m.bin"), 1)
    assert "config.json: an integer of 5000 digits" in line and not (tmp_path / "m.bin").exists()


def rewrite_header(path, change):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = change(data[8:8 + n].decode())
    path.write_bytes(len(header.encode()).to_bytes(8, "little") + header.encode() + data[8 + n:])


@pytest.mark.parametrize("change,message", [
    (lambda h: h.replace('"data_offsets":[0,', '"data_offsets":[1' + "0" * 4999 + ",", 1), "an integer of 5000 digits"),
    (lambda h: h.replace('"shape":[', '"shape":[' + "9" * 5000 + ",", 1), "an integer of 5000 digits"),
    (lambda h: h.replace('"transformer.h.0.', '"transformer.h.' + "9" * 5000 + ".", 1), "numbered with 5000 digits"),
])
def test_safetensors_numbers_of_thousands_of_digits(hf, tmp_path, change, message):
    path = hf / "model.safetensors"
    rewrite_header(path, lambda h: change(h.replace(" ", "")))
    line = one_error_line(cli("gpt-convert", hf, tmp_path / "m.bin"), 1)
    assert message in line, line


# ----------------------------------------------------------------------------
# the download: its arguments, a server's headers and bodies, local files

@pytest.mark.parametrize("timeout", ["inf", "1e400", "-1", "0", "nan", "soon", "9" * 5000])
def test_download_timeouts_that_are_no_time(tmp_path, timeout):
    line = one_error_line(cli("gpt-checkpoint", "download", tmp_path / "m.bin", "--url", "http://127.0.0.1:9/x",
                              "--timeout", timeout), 2)
    assert "argument --timeout:" in line and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["fifo", "/dev/zero", "/dev/null", "folder"])
def test_download_of_a_local_file_that_is_no_file(tmp_path, name):
    """file:// URLs: a FIFO would wait forever, /dev/zero would fill the disk."""
    path = {"fifo": tmp_path / "fifo", "folder": tmp_path}.get(name, name)
    if name == "fifo":
        os.mkfifo(path)
    out = tmp_path / "out" / "m.bin"
    out.parent.mkdir()
    line = one_error_line(cli("gpt-checkpoint", "download", out, "--url", f"file://{path}", timeout=30), 1)
    assert "not a model file" in line and list(out.parent.iterdir()) == []


@pytest.fixture
def server(make_model):
    """A local HTTP server whose next answer the test sets: (headers, body chunks)."""
    import http.server
    import threading
    answer = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            headers, body = answer["headers"], answer["body"]
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                for chunk in body():
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield answer, f"http://127.0.0.1:{httpd.server_address[1]}/gpt2_124M.bin"
    httpd.shutdown()


def endless(chunk):
    def body():
        while True:
            yield chunk
    return body


@pytest.mark.parametrize("case", ["length not a number", "length of 5000 digits", "endless zeros",
                                  "a model then more", "a model, length too small"])
def test_download_from_a_hostile_server(server, make_model, tmp_path, case):
    answer, url = server
    model = make_model().read_bytes()
    answer["headers"], answer["body"] = {
        "length not a number": ({"Content-Length": "lots"}, lambda: [model]),
        "length of 5000 digits": ({"Content-Length": "9" * 5000}, lambda: [model]),
        "endless zeros": ({}, endless(bytes(1 << 16))),
        "a model then more": ({}, lambda: itertools.chain([model], endless(b"x" * 4096)())),
        "a model, length too small": ({"Content-Length": "10"}, lambda: [model]),
    }[case]
    out = tmp_path / "m.bin"
    done = cli("gpt-checkpoint", "download", out, "--url", url, "--timeout", "5", timeout=60)
    if case in ("length not a number", "length of 5000 digits"):  # the header says the size: taken
        assert done.returncode == 0 and out.read_bytes() == model, done.stderr
    else:
        line = one_error_line(done, 1)
        assert ("bad magic number" if case == "endless zeros" else "more bytes than its header says"
                if case == "a model then more" else "broke off") in line or case == "a model, length too small", line
        assert not out.exists() and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------
# a model file that shrinks under the map

@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_a_model_truncated_under_a_running_gpt(make_model, tmp_path, dtype):
    """`gpt --stdin` answers, the file is cut to its header (what rewriting it in place
    does for a moment), and the next request reads a lost page: one line, exit 1, not a
    silent SIGBUS death."""
    import shutil
    model = tmp_path / "m.bin"
    shutil.copy(make_model(confident=True), model)
    proc = subprocess.Popen([*command("gpt"), "--model", str(model), "--stdin", "--dtype", dtype],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("1 2\n")
    proc.stdin.flush()
    assert all(proc.stdout.readline().strip() for _ in range(8)) and proc.stdout.readline() == "\n"
    os.truncate(model, 1024)
    proc.stdin.write("3 4\n")
    proc.stdin.flush()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err.splitlines() == [
        "gpt: error: the model file shrank or was rewritten while gpt read it (SIGBUS); "
        "replace a model in use by renaming a new file onto it"], err


# ----------------------------------------------------------------------------
# resource limits at start-up

def limited(kind, value):
    import resource

    def apply():
        resource.setrlimit(kind, (value, value))
    return apply


@pytest.mark.parametrize("name", ["gpt", "gpt-chat"])
@pytest.mark.parametrize("limit", ["address space", "open files"])
def test_a_resource_limit_at_start_up_is_one_line(make_model, name, limit):
    """ulimit -v too low for llvmlite's shared object to load; ulimit -n too low for chat
    to start its gpt: one line (chat: its own, or its gpt's), exit 1."""
    import resource
    kind, value = {"address space": (resource.RLIMIT_AS, 200 << 20), "open files": (resource.RLIMIT_NOFILE, 6)}[limit]
    model = make_model(VOCAB_50257, confident=True)
    args = ["1", "2"] if name == "gpt" else ["--once", "hello"]
    done = subprocess.run([*command(name), "--model", str(model), *args], capture_output=True, text=True,
                          preexec_fn=limited(kind, value), timeout=120)
    if name == "gpt" and limit == "open files":  # gpt needs few files: it runs
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    line, = done.stderr.splitlines()
    assert line.startswith(("gpt: error: ", "gpt-chat: error: ")) and "resource limit" in line, line

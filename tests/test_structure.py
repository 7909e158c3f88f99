"""The codebase's shape, checked: the import graph has no circle, the library stands below
the commands, and the docs' links and commands lead somewhere."""

import ast
import re
import subprocess
import sys

import pytest

from conftest import ROOT, command

COMMANDS = {"gpt", "chat", "gpt_checkpoint", "convert", "perplexity"}  # the console scripts' modules
SHARED_BY_COMMANDS = {"cli", "warmup", "_checkout"}  # what only commands may import
LIBRARY = {"model", "checkpoint", "weights", "files", "safetensors_format", "backends", "dtypes", "errors",
           "sampler", "random_model", "serial", "parallel", "gpu", "bus_error", "encoding", "scoring",
           "target"}


def package_modules():
    """name -> path of every module of the package gptpy (a subpackage by its folder's name)."""
    modules = {path.stem: path for path in ROOT.glob("*.py") if path.stem != "__init__"}
    for folder in ("serial", "parallel", "gpu"):
        modules[folder] = ROOT / folder
    return modules


def imports_of(path):
    """The package's modules that `path` (a file, or a subpackage's folder) imports, at
    its top or inside a function: relative imports, and `_checkout`'s bootstrap."""
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    inside_subpackage = path.is_dir()
    found = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level == 1 and inside_subpackage:
                    continue  # a subpackage's own files
                if node.module:
                    found.add(node.module.split(".")[0])
                else:  # from . import a, b
                    found.update(alias.name for alias in node.names)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                found.update(name.split(".")[0] for name in names if name and name.split(".")[0] in ("_checkout", "argparse"))
    return found


def import_graph():
    modules = package_modules()
    return {name: imports_of(path) for name, path in modules.items()}


def test_every_module_is_classified():
    assert set(package_modules()) == COMMANDS | SHARED_BY_COMMANDS | LIBRARY


def test_the_import_graph_has_no_circle():
    graph = {name: {m for m in deps if m in package_modules()} for name, deps in import_graph().items()}
    state = {}

    def visit(name, path):
        if state.get(name) == "open":
            raise AssertionError("import circle: " + " -> ".join([*path, name]))
        if state.get(name) is None:
            state[name] = "open"
            for dep in sorted(graph[name]):
                visit(dep, [*path, name])
            state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_the_library_imports_no_command_and_no_argument_parser():
    for name, deps in import_graph().items():
        if name in LIBRARY:
            assert not deps & (COMMANDS | SHARED_BY_COMMANDS | {"argparse"}), (name, deps)


def test_commands_do_not_import_commands():
    for name, deps in import_graph().items():
        if name in COMMANDS:
            assert not deps & (COMMANDS - {name}), (name, deps)


def test_the_checker_sees_an_arrow_it_must_refuse(tmp_path):
    """The checks above would pass on a checker that finds nothing: it finds known arrows."""
    graph = import_graph()
    assert {"backends", "checkpoint", "model"} <= graph["warmup"] and "weights" in graph["parallel"]
    assert "checkpoint" in graph["backends"]  # inside a function: counted too
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from .cli import say\n    import argparse\n")
    assert imports_of(bad) == {"cli", "argparse"}


# the docs

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "dev" / "README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(doc):
    text = doc.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links or doc.name != "README.md", "the README links into docs/"
    for link in links:
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        target = link.split("#")[0]
        if target:
            assert (doc.parent / target).exists(), f"{doc.name}: {link}"


def test_the_readme_is_a_short_page():
    assert len((ROOT / "README.md").read_bytes()) <= 10 * 1024


def test_no_doc_refers_to_issues_or_a_tracker():
    for doc in DOCS:
        assert not re.search(r"\bthe issue\b|\bissue \d+|\btracker\b", doc.read_text(), re.I), doc


def shown_commands(text):
    """The commands a doc shows in its code blocks: the `$ cmd ...` lines of a block that
    has them (the rest is their output), every line of one that has none."""
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        lines = block.splitlines()
        prompted = [line[2:] for line in lines if line.startswith("$ ")]
        for line in prompted or lines:
            line = line.split("#")[0].strip()
            if line:
                yield line.split()


def test_the_readmes_two_setup_commands_are_make_run_and_make_test():
    shown = list(shown_commands((ROOT / "README.md").read_text()))
    assert shown[:2] == [["make", "run"], ["make", "test"]]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), "CI runs the README's test command"


def test_every_command_the_readme_shows_still_runs():
    """--help of each command shown. A make target is asked whether it exists (`make -q`
    runs no recipe, where `make -n` still runs those that call $(MAKE)): `make run` runs
    in tests/test_make.py, and `make test` is this suite."""
    seen = set()
    for words in shown_commands((ROOT / "README.md").read_text()):
        program = words[0]
        if program == "make":
            key = tuple(words)
            args = ["make", "-q", "-C", str(ROOT), *words[1:]]
        elif program in ("python", "python3"):
            key = (words[1],)
            args = [sys.executable, str(ROOT / words[1]), "--help"]
        elif program in ("printf", "cat", "echo"):
            continue
        else:
            key = (program,)
            args = [*command(program), "--help"]
        if key in seen:
            continue
        seen.add(key)
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
        if program == "make":  # -q: 0 up to date, 1 would run, 2 no such target
            assert result.returncode in (0, 1) and "No rule" not in result.stderr, (words, result.stderr)
        else:
            assert result.returncode == 0, (words, result.stderr)
    assert {("gpt",), ("gpt-chat",), ("gpt-convert",), ("gpt-checkpoint",)} <= seen

"""`python gpt.py` and `python chat.py` in a checkout: run the command as the module it
is once installed, with the checkout's folder as the package gptpy (its modules import
each other relatively, so that installed they cannot meet other packages' `serial`)."""

import importlib
import importlib.util
import sys
from pathlib import Path


def run_as_package(command):
    root = Path(__file__).resolve().parent
    if "gptpy" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gptpy", root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["gptpy"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"gptpy.{command}").main()

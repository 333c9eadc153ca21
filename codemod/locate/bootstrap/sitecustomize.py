"""Put on the path of every Python process `codemod locate` starts (through PYTHONPATH).

It imports nothing heavy: :mod:`codemod.locate.hook` waits for the program to import torch and
only then starts the in-place locator. A ``sitecustomize`` this one shadows (the environment's
own) still runs, after it.
"""

import os
import sys


def _start_codemod_locate() -> None:
    if not os.environ.get("CODEMOD_LOCATE_DIR"):
        return
    try:
        from codemod.locate import hook
    except ImportError:  # another interpreter: torch-codemod is reachable through the package dir
        package_parent = os.environ.get("CODEMOD_LOCATE_PACKAGE")
        if not package_parent:
            return
        sys.path.append(package_parent)  # last, so it shadows nothing of the program's
        try:
            from codemod.locate import hook
        except ImportError:
            return
    hook.install()


def _chain_shadowed_sitecustomize() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_start_codemod_locate()
_chain_shadowed_sitecustomize()

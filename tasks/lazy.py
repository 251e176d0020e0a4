"""torch, imported when first used.

Parsing a spec reads the tasks' and models' argument classes, names and metrics; with these names
in place of `import torch`, that costs no torch import (about 1.3 s, 1.6 s of CPU on a 2-core
machine): a typo in a spec is reported at once, and `paretolab run --dry-run` starts at once.
The first attribute read (in a worker, the first trial) imports the real module; later reads find
its attributes in the proxy's own namespace, as fast as a module's.

(`importlib.util.LazyLoader` would do the same, but puts an unexecuted `torch` into `sys.modules`,
where any library that tests `"torch" in sys.modules` would set it off.)
"""

from __future__ import annotations

import functools
import importlib
import types


class LazyModule(types.ModuleType):
    """The module `name`, imported on the first read of one of its attributes."""

    def __getattr__(self, attr: str):
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        value = self.__dict__[attr] = getattr(module, attr)  # also what the module makes on demand
        return value


torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")


def no_grad(fn):
    """`@torch.no_grad()` without importing torch where the function is defined."""
    @functools.wraps(fn)
    def without_grad(*args, **kwargs):
        with torch.no_grad():
            return fn(*args, **kwargs)
    return without_grad

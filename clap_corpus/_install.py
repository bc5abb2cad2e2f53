"""One name per module: the source folders are only ever ``clap_corpus.<folder>``.

setup.py maps the top-level folders (core/, pipeline/ ...) onto the ``clap_corpus`` namespace. Two
things could still give the same file a second identity, or a confusing error:

- the repository root on sys.path (``python -m`` and ``python -c`` put the working directory there)
  makes ``import pipeline.spec.corpus`` work next to ``clap_corpus.pipeline.spec.corpus``: two copies of every
  module, so two ``Code`` enums and two ``Record`` classes that do not compare equal. Each folder's
  ``__init__`` calls :func:`refuse_second_identity`, which stops such an import with what to import.
- the editable install (``pip install -e .``, strict mode, set in setup.py) is a tree of links to the
  source files, made when it is installed: a module added since is not in it. :class:`NewModuleHint`
  turns that ``ModuleNotFoundError`` into one that says to run the install again.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

NAMESPACE = "clap_corpus"


def refuse_second_identity(name: str) -> None:
    """Raise ImportError unless the package ``name`` is imported as ``clap_corpus.<folder>``."""
    if name.startswith(f"{NAMESPACE}."):
        return
    folder = name.rpartition(".")[2]
    raise ImportError(
        f"{folder}/ is a source folder of clap-corpus, imported only as {NAMESPACE}.{folder}: as {name!r} "
        "it would be a second copy of its modules (the working directory is on sys.path under `python -m` "
        f"and `python -c`). Import {NAMESPACE}.{folder} instead (run `python -m {NAMESPACE}.{folder}...`), "
        "with the project installed (`pip install -e .` in the repository root).",
        name=name,
    )


class NewModuleHint(importlib.abc.MetaPathFinder):
    """Last on sys.meta_path: a ``clap_corpus`` module that exists in the source tree but not in the
    editable install's link tree raises ModuleNotFoundError saying to reinstall.

    Only consulted after every other finder failed. The link tree's folders are real folders holding
    links to the source files, so the source folder is where the package's ``__init__.py`` link
    points; a regular install has no links and this finder returns None, as if it were not there.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        # clap_corpus.<folder>.<module>: a new folder needs setup.py's FOLDERS anyway
        if not fullname.startswith(f"{NAMESPACE}.") or fullname.count(".") < 2 or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for folder in path:
            init = os.path.join(folder, "__init__.py")
            if not os.path.islink(init):
                continue
            source = os.path.dirname(os.path.realpath(init))
            if os.path.isfile(os.path.join(source, f"{leaf}.py")) or os.path.isfile(
                os.path.join(source, leaf, "__init__.py")
            ):
                raise ModuleNotFoundError(
                    f"No module named {fullname!r} in the editable install, though "
                    f"{os.path.join(source, leaf)} exists: the install links the modules that existed "
                    "when it was made. Run the editable install again (`pip install -e .` in the "
                    "repository root, with the extras you use).",
                    name=fullname,
                )
        return None


def install_new_module_hint() -> None:
    if not any(isinstance(f, NewModuleHint) for f in sys.meta_path):
        sys.meta_path.append(NewModuleHint())

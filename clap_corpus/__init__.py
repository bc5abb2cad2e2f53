"""clap-corpus: build CLAP training corpora with Apache Beam, and train CLAP on them.

The public API (docs/api.md)::

    from clap_corpus import BuildCorpus, load_spec, run_corpus

    spec = load_spec("spec.yaml")          # the corpus spec, checked (SpecError names every problem)
    summary = run_corpus(spec, "out/")     # build it in a Beam pipeline of its own; the run summary
    pipeline | BuildCorpus(spec, "out/")   # or the same job inside a Beam pipeline of yours

the run summary's model (:class:`RunSummary`) and the records an adapter yields (:class:`Record`,
:class:`Reject`, reject :class:`Code`). The rest
of the code lives in the folders core/, transforms/, manifests/, k2c/, scoring/, pipeline/ and trainer/
of the source tree; setup.py installs them as ``clap_corpus.core``, ``clap_corpus.pipeline`` ..., so
that installing the project never puts a package named ``pipeline`` at the top of site-packages.
"""

from __future__ import annotations

import importlib
from pkgutil import extend_path
from typing import TYPE_CHECKING, Any

# With the repository root as the working directory, ``python -m ...`` (Beam's worker processes, or
# ``python -m clap_corpus.pipeline``) finds this folder before an installed copy of the package, and
# the folder holds no source folder. extend_path adds the installed copy's folder (every
# clap_corpus folder on sys.path), so that clap_corpus.pipeline and the rest come from the install.
__path__ = extend_path(__path__, __name__)

from clap_corpus._install import install_new_module_hint

# A module added to the source since the editable install was made: say to reinstall (_install.py).
install_new_module_hint()

if TYPE_CHECKING:  # what type checkers and editors read; at run time __getattr__ imports them
    from clap_corpus.core.records import Record, Reject
    from clap_corpus.core.rejects import Code
    from clap_corpus.pipeline.launch.run import run_corpus
    from clap_corpus.pipeline.outputs.summary_model import RunSummary
    from clap_corpus.pipeline.spec.corpus import load_spec
    from clap_corpus.pipeline.stages.graph import BuildCorpus

__all__ = ["BuildCorpus", "Code", "Record", "Reject", "RunSummary", "load_spec", "run_corpus"]

# Each public name -> the module that defines it, imported on first use (PEP 562): `import clap_corpus`,
# which every `import clap_corpus.core...` runs first, loads no Apache Beam (the trainer has none).
_HOME = {
    "BuildCorpus": "clap_corpus.pipeline.stages.graph",
    "Code": "clap_corpus.core.rejects",
    "Record": "clap_corpus.core.records",
    "Reject": "clap_corpus.core.records",
    "RunSummary": "clap_corpus.pipeline.outputs.summary_model",
    "load_spec": "clap_corpus.pipeline.spec.corpus",
    "run_corpus": "clap_corpus.pipeline.launch.run",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # the next lookup finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

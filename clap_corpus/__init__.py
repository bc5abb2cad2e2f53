"""clap-corpus: build CLAP training corpora with Apache Beam, and train CLAP on them.

The code lives in the folders core/, transforms/, manifests/, k2c/, pipeline/ and trainer/ of the
source tree; setup.py installs them as ``clap_corpus.core``, ``clap_corpus.pipeline`` ..., so that
installing the project never puts a package named ``pipeline`` at the top of site-packages.
"""

from pkgutil import extend_path

# With the repository root as the working directory, ``python -m ...`` (Beam's worker processes, or
# ``python -m clap_corpus.pipeline``) finds this folder before an installed copy of the package, and
# the folder holds no source folder. extend_path adds the installed copy's folder (every
# clap_corpus folder on sys.path), so that clap_corpus.pipeline and the rest come from the install.
__path__ = extend_path(__path__, __name__)

from clap_corpus._install import install_new_module_hint

# A module added to the source since the editable install was made: say to reinstall (_install.py).
install_new_module_hint()

"""clap-corpus: build CLAP training corpora with Apache Beam, and train CLAP on them.

The code lives in the folders core/, transforms/, manifests/, k2c/, pipeline/ and trainer/ of the
source tree; setup.py installs them as ``clap_corpus.core``, ``clap_corpus.pipeline`` ..., so that
installing the project never puts a package named ``pipeline`` at the top of site-packages.
"""

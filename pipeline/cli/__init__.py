"""The ``clapcorpus`` command line: ``main.py`` builds the parser, one module per command."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)

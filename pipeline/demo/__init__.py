"""The demo: synthetic sounds encoded by real encoders, and the embedded default corpus."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)

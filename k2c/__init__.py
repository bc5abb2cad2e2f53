"""Keyword-to-caption: a T5 model writes captions from keywords, then a debias pass."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)

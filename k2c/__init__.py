"""Keyword-to-caption: a T5 model writes captions from keywords, then a debias pass."""

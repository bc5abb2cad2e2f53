"""The start check of keyword-to-caption: the K2C model is there when a source uses K2C.

Called where the graph is built (pipeline/stages/graph.py), so that a missing model stops the launch
rather than every worker, and by `clapcorpus plan`.
"""

from __future__ import annotations

from clap_corpus.pipeline.spec.corpus import CorpusSpec


def check_k2c_model(spec: CorpusSpec) -> None:
    """What `clapcorpus run` checks while it builds its graph: the K2C model is there when a source
    uses K2C (a per-source override counts, whatever the section's own ``mode``). Raises ConfigError."""
    users = spec.k2c_sources()
    if not users:
        return
    from clap_corpus.k2c.handler import ModelUnavailable, check_captioner

    assert spec.options.k2c is not None  # k2c_sources() names none without the section
    try:
        check_captioner(spec.options.k2c, spec.path)
    except ModelUnavailable as e:
        mode = spec.options.k2c.mode
        raise ModelUnavailable(
            f"{e}\n(keyword-to-caption writes captions for {', '.join(users)}: options.k2c.mode is "
            f"{mode!r}{', options.k2c.sources turns it on for them' if mode == 'off' else ''})"
        ) from None

"""The embedded demo model: its files, its tokenizer, what it writes, constrained decoding, and the
training script that made it (a short seeded run, twice, must give the same bytes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clap_corpus.k2c.config import parse_k2c
from clap_corpus.k2c.debias import GENDERED_WORDS, bad_words_ids, contains_gendered
from clap_corpus.k2c.handler import load_captioner
from clap_corpus.k2c.keywords import keyword_set
from clap_corpus.k2c.presets import PRESETS, TINY_MODEL_DIR
from clap_corpus.k2c.tiny.train import EOS, PAD, UNK, TrainConfig, keyword_used, train
from clap_corpus.k2c.tiny.world import EVENTS, pairs

DEMO_SETS = [  # the demo corpus's keyword lists and label lists
    ("tone", "low", "steady"),
    ("tone", "high", "steady"),
    ("noise", "hiss", "bright"),
    ("noise", "rumble", "dark"),
    ("sweep", "rising", "tone"),
    ("sweep", "falling", "tone"),
    ("clicks", "slow", "rhythm"),
    ("beeps", "fast", "rhythm"),
    ("Hum",),
    ("Whistle",),
    ("White noise",),
    ("Rumble",),
    ("Chirp",),
    ("Tick",),
    ("Beep, bleep",),
]
SPEECH_SETS = [
    ("male speech",),
    ("female speech",),
    ("speaking", "loud"),
    ("laughter",),
    ("speech", "distant"),
]


@pytest.fixture(scope="module")
def captioner():
    cfg = parse_k2c({"model": "tiny"}, sources=[])
    return load_captioner(cfg)


def _inputs(sets):
    return [PRESETS["k2t"].format(keyword_set(s, ()).keywords) for s in sets]


def test_files_are_small_and_match_the_script():
    names = sorted(os.listdir(TINY_MODEL_DIR))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    size = sum(os.path.getsize(os.path.join(TINY_MODEL_DIR, n)) for n in names)
    assert size < 8 * 1024 * 1024
    config = json.loads(Path(TINY_MODEL_DIR, "config.json").read_text())
    cfg = TrainConfig()
    assert (config["d_model"], config["num_layers"], config["d_ff"]) == (cfg.d_model, cfg.layers, cfg.d_ff)
    report = json.loads(Path(TINY_MODEL_DIR).parent.joinpath("train_report.json").read_text())
    assert report["config"] == json.loads(json.dumps(cfg.__dict__))  # made by the committed defaults
    assert report["eval_keyword_use"] >= 0.8


def test_tokenizer_round_trip(captioner):
    tok = captioner.tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (PAD, EOS, UNK)
    assert len(tok) > 300  # not the 4-token vocabulary of the transformers-5 pitfall
    for p in pairs(50, 7):
        ids = tok(p.caption)["input_ids"]
        assert ids[-1] == EOS and UNK not in ids
        assert tok.decode(ids, skip_special_tokens=True) == p.caption
    assert tok("dog| rain </s>")["input_ids"][-2:] == [EOS, EOS]  # k2t: literal </s> plus the tokenizer's


def test_demo_captions_use_their_keywords(captioner):
    texts = captioner.generate(_inputs(DEMO_SETS))
    used = total = 0
    for s, text in zip(DEMO_SETS, texts, strict=True):
        kws = keyword_set(s, ()).keywords
        used += sum(keyword_used(k, text) for k in kws)
        total += len(kws)
        assert text and text[0].isupper() and text.endswith("."), text
    assert used / total >= 0.8, list(zip(DEMO_SETS, texts, strict=True))


def test_constrained_decoding_forbids_gendered_words(captioner):
    inputs = _inputs(SPEECH_SETS)
    constrained = captioner.generate(inputs)
    assert not any(contains_gendered(t) for t in constrained), constrained
    # the same model without the constraint does write gendered words for these keywords
    bad = captioner.bad_words
    captioner.bad_words = None
    try:
        unconstrained = captioner.generate(inputs)
    finally:
        captioner.bad_words = bad
    assert any(contains_gendered(t) for t in unconstrained), unconstrained


def test_bad_words_spare_the_world_vocabulary(captioner):
    """No keyword of the world starts with a forbidden single token (no collateral bans)."""
    tok = captioner.tokenizer
    singles = {s[0] for s in bad_words_ids(tok) if len(s) == 1}
    spoiled = []
    keywords = [k for ev in EVENTS for k, _ in ev.keys] + [a for ev in EVENTS for a in ev.adjectives]
    clause_words = [w for ev in EVENTS for c in ev.clauses for w in c.replace("{a}", "").split()]
    for word in dict.fromkeys(keywords + clause_words):
        if word.lower() in GENDERED_WORDS:
            continue
        ids = tok(word, add_special_tokens=False)["input_ids"]
        if ids and ids[0] in singles and len(ids) > 1:
            spoiled.append(word)
    assert not spoiled


def test_training_script_is_seeded(tmp_path):
    cfg = TrainConfig(train_pairs=400, eval_pairs=4, steps=6, d_model=32, d_ff=64, layers=1, heads=2)
    a = train(cfg, str(tmp_path / "a"), log=lambda *_: None)
    b = train(cfg, str(tmp_path / "b"), log=lambda *_: None)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a["final_loss"] == b["final_loss"] and a["examples"] == b["examples"]

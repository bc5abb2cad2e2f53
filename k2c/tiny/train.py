"""Build the embedded demo keyword-to-caption model: SentencePiece vocabulary plus a tiny T5, trained here.

    python -m clap_corpus.k2c.tiny.train          # writes k2c/tiny/model/ and k2c/tiny/train_report.json
    python -m clap_corpus.k2c.tiny.train --steps 300 --out /tmp/m   # quick and small (tests use this)

It is a demo model: it knows the few hundred words of :mod:`k2c.tiny.world` and nothing else. Point
``options.k2c.model`` at a real model (``gagan3012/k2t-base``) for real corpora.

Everything is seeded (pairs, SentencePiece, weights, batch order, dropout) and runs on the CPU with a
fixed thread count and deterministic algorithms, so a rerun on the same machine and library versions
writes the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from clap_corpus.k2c.keywords import keyword_set
from clap_corpus.k2c.presets import GENERATION_DEFAULTS, PRESETS, TINY_MODEL_DIR
from clap_corpus.k2c.tiny.world import Pair, pairs

HERE = os.path.dirname(os.path.abspath(__file__))
PAD, EOS, UNK = 0, 1, 2  # T5's special ids; the SentencePiece training must put them there


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1234
    train_pairs: int = 60_000
    eval_pairs: int = 300
    vocab_size: int = 512
    d_model: int = 128
    d_ff: int = 384
    layers: int = 3
    heads: int = 4
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 200
    threads: int = 2


def model_input(keywords: Sequence[str]) -> str:
    """The pipeline's exact input text for a keyword list (canonical set, k2t preset)."""
    return PRESETS["k2t"].format(keyword_set((), keywords).keywords)


def build_tokenizer(texts: Sequence[str], vocab_size: int, seed: int, workdir: str):
    """A SentencePiece unigram vocabulary from ``texts``, as a transformers T5Tokenizer.

    transformers 5's ``T5Tokenizer(vocab_file=...)`` silently builds a 4-token vocabulary from a
    locally trained model; building it from the (piece, score) list works.
    """
    import sentencepiece as spm
    from transformers import T5Tokenizer

    corpus = os.path.join(workdir, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in texts)
    prefix = os.path.join(workdir, "spiece")
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        input=corpus,
        model_prefix=prefix,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=PAD,
        eos_id=EOS,
        unk_id=UNK,
        bos_id=-1,
        hard_vocab_limit=False,  # the world's few hundred words may not fill vocab_size
        num_threads=1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_model(cfg: TrainConfig, vocab_size: int):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(cfg.seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_model // cfg.heads,
        d_ff=cfg.d_ff,
        num_layers=cfg.layers,
        num_decoder_layers=cfg.layers,
        num_heads=cfg.heads,
        relative_attention_num_buckets=16,
        relative_attention_max_distance=64,
        dropout_rate=0.1,
        feed_forward_proj="relu",
        # these two reach PreTrainedConfig through T5Config's kwargs, which its typed signature omits
        tie_word_embeddings=True,  # pyright: ignore[reportCallIssue]
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,  # pyright: ignore[reportCallIssue]
    )
    return T5ForConditionalGeneration(config)


def _batches(n: int, batch_size: int, steps: int, seed: int):
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(range(n))
            rng.shuffle(fresh)
            order.extend(fresh)
        yield order[:batch_size]
        del order[:batch_size]


def train(cfg: TrainConfig, out_dir: str, log=print) -> dict:
    import torch

    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.monotonic()
    data: list[Pair] = list(pairs(cfg.train_pairs, cfg.seed))
    inputs = [model_input(p.keywords) for p in data]
    targets = [p.caption for p in data]
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_tokenizer(inputs + targets, cfg.vocab_size, cfg.seed, tmp)
    enc = tok(inputs, padding=False, truncation=True, max_length=64)["input_ids"]
    dec = tok(targets, padding=False, truncation=True, max_length=64)["input_ids"]
    model = build_model(cfg, len(tok))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{len(data)} pairs, vocabulary {len(tok)}, {n_params / 1e6:.2f} M parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.05, 1.0 - s / cfg.steps),
    )
    model.train()
    losses: list[float] = []
    for step, idx in enumerate(_batches(len(data), cfg.batch_size, cfg.steps, cfg.seed)):
        x = _pad([enc[i] for i in idx], PAD)
        y = _pad([dec[i] for i in idx], -100)
        loss = model(input_ids=x, attention_mask=(x != PAD).long(), labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 250 == 0 or step + 1 == cfg.steps:
            log(f"step {step + 1}/{cfg.steps}: loss {sum(losses[-250:]) / len(losses[-250:]):.3f}")
    train_seconds = time.monotonic() - t0
    model.eval()
    model.generation_config.update(**GENERATION_DEFAULTS)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    quality = evaluate(out_dir, cfg)
    return {
        "config": asdict(cfg),
        "parameters": n_params,
        "vocabulary": len(tok),
        "final_loss": round(sum(losses[-250:]) / len(losses[-250:]), 4),
        "train_seconds": round(train_seconds, 1),
        **quality,
    }


def _pad(seqs: list[list[int]], value: int):
    import torch

    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def keyword_used(keyword: str, caption: str) -> bool:
    """A keyword counts as used when each of its words appears in the caption, inflections allowed."""
    words = [w.strip(".,").lower() for w in caption.split()]
    for part in keyword.lower().split():
        stem = part[: max(3, len(part) - 3)]
        if not any(w.startswith(stem) for w in words):
            return False
    return True


def evaluate(model_dir: str, cfg: TrainConfig) -> dict:
    """Beam-search captions for held-out keyword sets (another seed): how many keywords they use."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = T5ForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).eval()
    held = list(pairs(cfg.eval_pairs, cfg.seed + 1))
    used = total = 0
    examples = []
    for start in range(0, len(held), 32):
        chunk = held[start : start + 32]
        batch = tok([model_input(p.keywords) for p in chunk], return_tensors="pt", padding=True)
        with torch.no_grad():
            # (transformers types generate's self as a protocol its own models miss: hf_quantizer)
            out = model.generate(**batch, **GENERATION_DEFAULTS)  # pyright: ignore[reportAttributeAccessIssue]
        for p, text in zip(chunk, tok.batch_decode(out, skip_special_tokens=True), strict=True):
            kws = keyword_set((), p.keywords).keywords
            used += sum(keyword_used(k, text) for k in kws)
            total += len(kws)
            if len(examples) < 12:
                examples.append({"keywords": list(kws), "caption": text})
    return {"eval_keyword_use": round(used / total, 4), "eval_sets": len(held), "examples": examples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=TINY_MODEL_DIR)
    p.add_argument("--report", default=None, help="default: train_report.json next to the model folder")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--pairs", type=int, default=TrainConfig.train_pairs)
    p.add_argument("--eval-pairs", type=int, default=TrainConfig.eval_pairs)
    args = p.parse_args(argv)
    cfg = TrainConfig(steps=args.steps, train_pairs=args.pairs, eval_pairs=args.eval_pairs)
    report = train(cfg, args.out)
    path = args.report or os.path.join(os.path.dirname(os.path.abspath(args.out)), "train_report.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=1))
    for ex in report["examples"]:
        print(f"  {', '.join(ex['keywords'])} -> {ex['caption']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

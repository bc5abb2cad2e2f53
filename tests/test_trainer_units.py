"""The trainer's parts on small real tensors: metrics, loss, fusion, encoders, text, checkpoints.

Everything here runs offline and in seconds; the corpus-level tests are in test_trainer_e2e.py.
"""

from __future__ import annotations

import io
import math
import os
import shutil

import numpy as np
import pytest
import torch
from trainer_samples import sample_members, write_tar

from clap_corpus.core.audio import quantize_int16
from clap_corpus.trainer.checkpoint import (
    CheckpointError,
    check_compatible,
    load_state,
    load_weights,
    read_checkpoint,
)
from clap_corpus.trainer.checkpoint import save_checkpoint as write_checkpoint
from clap_corpus.trainer.config import (
    CAPTION_SOURCES,
    AudioConfig,
    ModelConfig,
    OptionError,
    TextConfig,
    TrainConfig,
    config_diff,
)
from clap_corpus.trainer.data import (
    BAD_JSON,
    MISSING_MEMBER,
    TRUNCATED_SHARD,
    UNREADABLE_SHARD,
    Decoded,
    SkipCounts,
    StreamConfig,
    TrainStream,
    collate,
    decode_wave,
    draw_caption,
    iter_parquet,
    iter_tar,
    stream_shards,
)
from clap_corpus.trainer.data import Shard as DataShard
from clap_corpus.trainer.evaluate import (
    chance_levels,
    ranks_of,
    retrieval_metrics,
    zero_shot_accuracy,
    zero_shot_classes,
)
from clap_corpus.trainer.fusion import AFF, FusedStem
from clap_corpus.trainer.loss import clip_loss
from clap_corpus.trainer.model import CLAP, HTSATEncoder, SwinBlock, build_audio_encoder
from clap_corpus.trainer.text import (
    TextModelError,
    build_tiny_text_model,
    load_text_encoder,
    load_tokenizer,
    tokenize,
)
from clap_corpus.transforms.flac import encode_flac
from clap_corpus.transforms.views import CHUNK_FRAMES, MEL_BINS, compute_views, plan_views
from clap_corpus.transforms.views_torch import compute_views_torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CAPTIONS = [
    "A loud recording of a steady low-pitched hum.",
    "The sound of whistle, quiet.",
    "Quiet noise, hiss, bright.",
    "Something loud: fast rhythmic beeping.",
    "This is a sound of chirp.",
]


# ------------------------------------------------------------------------------------------------
# Metrics


def _scores_as_embeddings(scores: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio = identity rows, text row j = caption j's scores against each clip: sim == scores.T."""
    n = scores.shape[1]
    return torch.eye(n, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64)


def test_ranks_with_ties_use_the_tiebreak_order():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1]])
    assert ranks_of(scores, torch.tensor([0]), torch.tensor([0, 1, 2, 3])).item() == 1
    # the tie with column 2 is broken the other way round
    assert ranks_of(scores, torch.tensor([0]), torch.tensor([3, 1, 0, 2])).item() == 2


def test_single_caption_metrics_by_hand():
    # caption i's scores against the 3 clips; true clip of caption i is i
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # rank 0
            [0.8, 0.5, 0.1],  # rank 1
            [0.7, 0.6, 0.2],  # rank 2
        ]
    )
    audio, text = _scores_as_embeddings(scores)
    m = retrieval_metrics(audio, text, per_clip=1)
    assert m["text_to_audio_R@1"] == pytest.approx(1 / 3)
    assert m["text_to_audio_R@5"] == 1.0
    assert m["text_to_audio_mAP@10"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    # audio -> text: clip j's column of scores; clip 0: 0.9 first; clip 1: 0.6 > 0.5 -> rank 1;
    # clip 2: 0.2 > 0.1 > 0.0 -> rank 0
    assert m["audio_to_text_R@1"] == pytest.approx(2 / 3)
    assert m["audio_to_text_mAP@10"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert m["text_to_audio_mean_rank"] == pytest.approx(2.0)


def test_five_caption_protocol_by_hand():
    n, k = 3, 5
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, size=(n * k, n))
    audio, text = _scores_as_embeddings(scores)
    m = retrieval_metrics(audio, text, per_clip=k)
    sim = scores.T  # [clip, caption]
    t2a = [int((scores[q] > scores[q, q // k]).sum()) for q in range(n * k)]
    assert m["text_to_audio_R@1"] == pytest.approx(np.mean(np.array(t2a) < 1))
    best, aps = [], []
    for i in range(n):
        ranks = sorted(int((sim[i] > sim[i, i * k + j]).sum()) for j in range(k))
        best.append(ranks[0])
        aps.append(sum((h + 1) / (r + 1) for h, r in enumerate(ranks) if r < 10) / k)
    assert m["audio_to_text_R@1"] == pytest.approx(np.mean(np.array(best) < 1))
    assert m["audio_to_text_R@5"] == pytest.approx(np.mean(np.array(best) < 5))
    assert m["audio_to_text_mAP@10"] == pytest.approx(np.mean(aps))


def test_five_caption_map_sorts_the_ranks():
    # One clip whose captions rank 0 and 3 (caption 0 ranked 3rd... by construction below) against
    # a second clip: the AP must not depend on which caption index holds which rank.
    n, k = 2, 5
    base = np.zeros((n * k, n))
    order = [9, 0, 5, 1, 7]  # scores of clip 0's captions: distinct positions
    for j, v in enumerate(order):
        base[j, 0] = v
    for j in range(k):
        base[k + j, 0] = [8, 6, 4, 3, 2][j]
    audio, text = _scores_as_embeddings(base)
    m1 = retrieval_metrics(audio, text, per_clip=k)
    permuted = base.copy()
    permuted[:k] = base[:k][[3, 1, 4, 0, 2]]
    m2 = retrieval_metrics(*_scores_as_embeddings(permuted), per_clip=k)
    assert m1["audio_to_text_mAP@10"] == pytest.approx(m2["audio_to_text_mAP@10"])


def test_perfect_and_collapsed_models():
    n = 12
    audio = torch.eye(n)
    perfect = retrieval_metrics(audio, audio.clone(), per_clip=1)
    assert perfect["text_to_audio_R@1"] == perfect["audio_to_text_R@1"] == 1.0
    assert perfect["text_to_audio_mAP@10"] == 1.0
    same = torch.ones(n, 4) / 2
    collapsed = retrieval_metrics(same, same.clone(), per_clip=1)
    # identical scores everywhere: the tie order decides, exactly one query in n is "right"
    assert collapsed["text_to_audio_R@1"] == pytest.approx(1 / n)
    assert collapsed["audio_to_text_R@1"] == pytest.approx(1 / n)


@pytest.mark.parametrize("per_clip", [1, 5])
def test_chance_levels_match_random_embeddings(per_clip):
    n, trials = 10, 200
    g = torch.Generator().manual_seed(1)
    acc: dict[str, list[float]] = {}
    for t in range(trials):
        audio = torch.randn(n, 8, generator=g)
        text = torch.randn(n * per_clip, 8, generator=g)
        for key, v in retrieval_metrics(audio, text, per_clip, seed=t).items():
            acc.setdefault(key, []).append(v)
    chance = chance_levels(n, per_clip)
    for key, expected in chance.items():
        values = np.array(acc[key])
        se = values.std() / math.sqrt(trials) + 1e-9
        assert abs(values.mean() - expected) < 4 * se + 1e-3, (key, values.mean(), expected)
    assert chance["text_to_audio_R@1"] == pytest.approx(1 / n)


def test_zero_shot_accuracy_and_chance():
    classes = zero_shot_classes([["Dog"], ["Vehicle horn, car horn"], ["Dog"], []])
    assert classes == ["dog", "vehicle horn"]
    class_text = torch.eye(2)
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    acc, chance, scored = zero_shot_accuracy(
        audio, [["Dog"], ["Vehicle horn, car horn"], ["Dog"], []], class_text, classes
    )
    assert scored == 3 and acc == pytest.approx(2 / 3) and chance == pytest.approx(1 / 2)


# ------------------------------------------------------------------------------------------------
# Loss


def test_clip_loss_is_symmetric_and_rewards_alignment():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    assert clip_loss(a, t, scale).item() == pytest.approx(clip_loss(t, a, scale).item())
    assert clip_loss(a, a, scale) < clip_loss(a, t, scale)
    same = torch.ones(4, 3) / math.sqrt(3)
    assert clip_loss(same, same, scale).item() == pytest.approx(math.log(4), rel=1e-6)


# ------------------------------------------------------------------------------------------------
# Fusion and audio encoders


def _views(b: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 4, CHUNK_FRAMES, MEL_BINS, generator=torch.Generator().manual_seed(seed))


def test_aff_blends_between_its_inputs():
    aff = AFF(8).eval()
    x, y = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    out = aff(x, y)
    assert out.shape == x.shape
    # 2*x*w + 2*y*(1-w) with 0 < w < 1: equal inputs come back doubled
    torch.testing.assert_close(aff(x, x), 2 * x)


@pytest.mark.parametrize("time_dim", [-1, -2])
def test_fused_stem_touches_only_longer_rows(time_dim):
    torch.manual_seed(0)
    kernel, stride = ((4, 4), (4, 4)) if time_dim == -1 else ((8, 3), (4, 2))
    stem = FusedStem(6, kernel, stride, fusion=True, time_dim=time_dim).eval()
    x = torch.randn(3, 4, 64, 96) if time_dim == -1 else torch.randn(3, 4, 96, 64)
    longer = torch.tensor([True, False, True])
    out = stem(x, longer)
    y = x.clone()
    y[:, 1:] += 1.0  # change every local view
    out2 = stem(y, longer)
    assert torch.equal(out[1], out2[1])  # a short clip ignores its local views
    assert not torch.allclose(out[0], out2[0]) and not torch.allclose(out[2], out2[2])
    plain = FusedStem(6, kernel, stride, fusion=False).eval()
    assert plain(x, longer).shape == out.shape


def test_fused_stem_keeps_fusion_weights_in_the_graph_without_longer_clips():
    stem = FusedStem(4, (4, 4), (4, 4))
    stem(torch.randn(2, 4, 32, 48), torch.tensor([False, False])).sum().backward()
    assert stem.local_proj.weight.grad is not None
    assert torch.count_nonzero(stem.local_proj.weight.grad) == 0


@pytest.mark.parametrize(
    ("encoder", "size"), [("cnn", "micro"), ("cnn", "small"), ("htsat", "micro"), ("htsat", "mini")]
)
def test_audio_encoders_shapes_and_gradients(encoder, size):
    torch.manual_seed(0)
    enc = build_audio_encoder(AudioConfig(encoder=encoder, size=size))
    views = _views(2)
    out = enc(views, torch.tensor([True, False]))
    assert out.shape == (2, enc.out_dim) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_shifted_windows_do_not_attend_across_the_wrap():
    torch.manual_seed(0)
    block = SwinBlock(dim=8, resolution=16, heads=2, ws=8, shift=4).eval()
    x = torch.randn(1, 16 * 16, 8)
    y = x.clone().view(1, 16, 16, 8)
    y[:, :4] += 3.0  # the top rows, which the shift wraps next to the bottom rows
    out, out2 = block(x).view(1, 16, 16, 8), block(y.view(1, -1, 8)).view(1, 16, 16, 8)
    # After the shift, rows 12-15 and 0-3 share windows: the mask keeps them apart.
    assert torch.allclose(out[:, 12:], out2[:, 12:], atol=1e-6)
    unmasked = SwinBlock(dim=8, resolution=16, heads=2, ws=8, shift=4).eval()
    unmasked.load_state_dict(block.state_dict())
    unmasked.attn_mask = None  # the same block without the mask does leak
    assert not torch.allclose(
        unmasked(x).view(1, 16, 16, 8)[:, 12:], unmasked(y.view(1, -1, 8)).view(1, 16, 16, 8)[:, 12:]
    )


def test_htsat_fold_is_four_rows_of_256_frames():
    enc = HTSATEncoder(AudioConfig(encoder="htsat", size="micro"))
    x = torch.zeros(1, 1, 1024, MEL_BINS)
    x[0, 0, 300, 7] = 1.0  # frame 300 = row 1, column 44; bin 7
    img = enc.fold(x)
    assert img.shape == (1, 1, 256, 256)
    assert img[0, 0, 1 * MEL_BINS + 7, 300 - 256] == 1.0 and img.sum() == 1.0


def test_htsat_published_sizes_build():
    # HTS-AT tiny as LAION-CLAP uses it: 768-d output, ~28 M parameters in the Swin body
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        enc = HTSATEncoder(AudioConfig(encoder="htsat", size="tiny"))
    assert enc.out_dim == 768
    assert 25e6 < sum(p.numel() for p in enc.parameters()) < 32e6


def test_unknown_sizes_are_refused():
    with pytest.raises(ValueError, match="unknown htsat size"):
        AudioConfig(encoder="htsat", size="huge")
    with pytest.raises(OptionError, match="encoder: must be one of htsat, cnn, got 'rnn'"):
        AudioConfig(encoder="rnn")


# ------------------------------------------------------------------------------------------------
# Text


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("tiny_text"))
    return build_tiny_text_model(
        CAPTIONS * 3, folder, TextConfig(model="tiny", tiny_hidden=32, tiny_vocab=200)
    )


def test_tiny_tokenizer_round_trip_and_determinism(tiny_text, tmp_path):
    tok = load_tokenizer(tiny_text, offline=True)
    for caption in CAPTIONS:
        ids = tok(caption)["input_ids"]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert tok.unk_token_id not in ids
        # the WordPiece decoder puts spaces around punctuation: compare the characters
        assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == caption.lower().replace(" ", "")
    again = build_tiny_text_model(
        reversed(CAPTIONS * 3),
        str(tmp_path / "again"),
        TextConfig(model="tiny", tiny_hidden=32, tiny_vocab=200),
    )
    with (
        open(os.path.join(tiny_text, "tokenizer.json"), "rb") as a,
        open(os.path.join(again, "tokenizer.json"), "rb") as b,
    ):
        assert a.read() == b.read()


def test_mean_pooling_ignores_padding(tiny_text):
    tok = load_tokenizer(tiny_text, offline=True)
    torch.manual_seed(0)
    enc = load_text_encoder(tiny_text, TextConfig(model="tiny"), pretrained=False, offline=True).eval()
    assert enc.pooling == "mean"
    ids, mask = tokenize(tok, CAPTIONS, 77)
    batch = enc(ids, mask)
    for i, caption in enumerate(CAPTIONS):
        one = enc(*tokenize(tok, [caption], 77))
        torch.testing.assert_close(batch[i : i + 1], one, rtol=1e-5, atol=1e-5)


def test_any_hugging_face_encoder_with_its_weights(tiny_text, tmp_path):
    """A RoBERTa-architecture folder (as roberta-base is): pretrained weights load, the pooler pools."""
    from transformers import RobertaConfig, RobertaModel

    folder = tmp_path / "roberta-like"
    shutil.copytree(tiny_text, folder)
    tok = load_tokenizer(str(folder), offline=True)
    cfg = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(1)
    saved = RobertaModel(cfg)
    saved.save_pretrained(str(folder))
    enc = load_text_encoder(str(folder), TextConfig(model=str(folder)), pretrained=True, offline=True).eval()
    assert enc.pooling == "pooler" and enc.dim == 32
    torch.testing.assert_close(enc.model.pooler.dense.weight, saved.pooler.dense.weight)
    ids, mask = tokenize(tok, CAPTIONS[:2], 77)
    torch.testing.assert_close(enc(ids, mask), saved.eval()(input_ids=ids, attention_mask=mask).pooler_output)


def test_missing_text_model_says_how_to_provide_it():
    with pytest.raises(TextModelError, match="--text-model tiny") as e:
        load_tokenizer("no-such-org/no-such-model-xyz", offline=True)
    # the download command that huggingface_hub installs (`huggingface-cli` is gone from it)
    assert "`hf download no-such-org/no-such-model-xyz`" in str(e.value)


# ------------------------------------------------------------------------------------------------
# Checkpoints and configs


def _tiny_model(tiny_text: str, cfg: ModelConfig) -> CLAP:
    torch.manual_seed(0)
    return CLAP(cfg, load_text_encoder(tiny_text, cfg.text, pretrained=False, offline=True))


def _cfg(**audio) -> ModelConfig:
    return ModelConfig(
        audio=AudioConfig(encoder="cnn", size="micro", **audio),
        text=TextConfig(model="tiny", tiny_hidden=32, tiny_vocab=200),
        joint_dim=16,
    )


def test_checkpoint_round_trip_and_mismatch(tiny_text, tmp_path):
    cfg = _cfg()
    model = _tiny_model(tiny_text, cfg)
    path = write_checkpoint(
        str(tmp_path / "ck"), model, cfg, TrainConfig(), {"version": 1, "step": 3}, tiny_text
    )
    ck = read_checkpoint(path)
    assert ck.model == cfg and ck.train == TrainConfig()
    other = _tiny_model(tiny_text, cfg)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    load_weights(path, other)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert load_state(path)["step"] == 3
    # another configuration: refused, naming the field
    with pytest.raises(CheckpointError, match=r"audio\.fusion: True != False"):
        check_compatible(ck, _cfg(fusion=False))
    # weights that do not fit: refused with names and shapes, not a raw PyTorch error
    with pytest.raises(CheckpointError, match="does not fit this model: 30 unexpected"):
        load_weights(path, _tiny_model(tiny_text, _cfg(fusion=False)))


def test_state_file_never_unpickles_objects(tiny_text, tmp_path):
    cfg = _cfg()
    path = write_checkpoint(
        str(tmp_path / "ck"), _tiny_model(tiny_text, cfg), cfg, None, {"ok": 1}, tiny_text
    )

    class Payload:
        def __reduce__(self):
            return (print, ("arbitrary code ran",))

    buf = io.BytesIO()
    torch.save({"evil": Payload()}, buf)
    with open(os.path.join(path, "state.pt"), "wb") as f:
        f.write(buf.getvalue())
    with pytest.raises(Exception, match=r"Weights only load failed|weights_only"):
        load_state(path)


def test_config_json_round_trip_and_diff():
    cfg = ModelConfig(audio=AudioConfig(encoder="cnn", size="small"), text=TextConfig(model="tiny"))
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    t = TrainConfig(data="x", betas=(0.9, 0.98))
    assert TrainConfig.from_json(t.to_json()) == t
    assert config_diff(cfg.to_json(), ModelConfig().to_json())[0].startswith("audio.encoder")
    with pytest.raises(OptionError, match="colour: unknown field"):
        ModelConfig.from_json({**cfg.to_json(), "colour": "red"})


# ------------------------------------------------------------------------------------------------
# Data pieces that need no corpus


@pytest.fixture(scope="module")
def three_samples() -> list[tuple[str, bytes]]:
    return [m for k in ("s0", "s1", "s2") for m in sample_members(k)]


def test_tar_members_group_by_the_key_before_the_first_dot(three_samples, tmp_path):
    path = str(tmp_path / "000000.tar")
    write_tar(path, three_samples)
    counts = SkipCounts()
    raws = list(iter_tar(DataShard(path, 3), counts))
    assert [r.key for r in raws] == ["s0", "s1", "s2"] and not counts
    # `.mel.npy` is one suffix: the stored views are found and chosen over the FLAC
    assert all(r.mel is not None and r.flac is None for r in raws)
    assert raws[1].meta["text"] == ["caption of s1"]
    computed = list(iter_tar(DataShard(path, 3), counts, "compute"))
    assert all(r.mel is None and r.flac is not None for r in computed) and not counts


def test_a_tar_cut_inside_a_member_loses_the_sample_being_read(three_samples, tmp_path):
    path = str(tmp_path / "000000.tar")
    offsets = write_tar(path, three_samples)
    name, start, end = offsets[2 * 3 + 2]  # the third sample's mel: its flac and json were complete
    assert name == "s2.mel.npy"
    with open(path, "r+b") as f:
        f.truncate((start + end) // 2)
    counts = SkipCounts()
    assert [r.key for r in iter_tar(DataShard(path, 3), counts)] == ["s0", "s1"]
    assert counts == {TRUNCATED_SHARD: 1}


def test_broken_members_are_counted_and_the_shard_goes_on(tmp_path):
    members = sample_members("a") + [
        m
        for m in sample_members("b")
        if not m[0].endswith(".json")  # no document
    ]
    members += [(n, b"{not json" if n.endswith(".json") else d) for n, d in sample_members("c")]
    members += [m for m in sample_members("d", mel=False)]
    path = str(tmp_path / "000000.tar")
    write_tar(path, members)
    counts = SkipCounts()
    assert [r.key for r in iter_tar(DataShard(path, 4), counts)] == ["a", "d"]
    assert counts == {MISSING_MEMBER: 1, BAD_JSON: 1}
    counts = SkipCounts()
    assert [r.key for r in iter_tar(DataShard(path, 4), counts, "stored")] == ["a"]
    assert counts == {MISSING_MEMBER: 2, BAD_JSON: 1}


def test_a_member_twice_in_one_sample_ends_the_shard(tmp_path):
    a, b = sample_members("a"), sample_members("b")
    path = str(tmp_path / "000000.tar")
    write_tar(path, a + b[:2] + [b[1]] + b[2:])
    counts = SkipCounts()
    assert [r.key for r in iter_tar(DataShard(path, 2), counts)] == ["a"]
    assert counts == {TRUNCATED_SHARD: 1}


def test_training_batches_are_seeded_and_resume_exactly(tmp_path):
    """webdataset's shuffle with our seeded generator: the same seed gives the same batches, another
    seed other ones, and a stream started at batch k gives the uninterrupted stream's batches from k."""
    shards = []
    for s in range(3):
        path = str(tmp_path / f"{s:06d}.tar")
        write_tar(path, [m for i in range(8) for m in sample_members(f"s{s}-{i}", mel=False)])
        shards.append(DataShard(path, 8))
    steps = 10  # 40 samples over 24: a second pass, reshuffled

    def run(seed: int, start: int = 0) -> list[tuple[int, list[str]]]:
        cfg = StreamConfig(batch_size=4, workers=0, shuffle_buffer=6, seed=seed)
        return [(b.index, b.keys) for b in TrainStream(shards, cfg, 0, steps, start)]

    whole = run(7)
    assert [i for i, _ in whole] == list(range(steps))
    first_pass = [k for _, keys in whole[:6] for k in keys]
    assert sorted(first_pass) == sorted(f"s{s}-{i}" for s in range(3) for i in range(8))
    assert first_pass != sorted(first_pass)
    assert run(7) == whole and run(8) != whole
    assert run(7, start=4) == whole[4:]


def test_shards_are_dealt_to_every_slot_once():
    shards = [DataShard(f"s{i}", 10) for i in range(7)]
    for epoch in (0, 1):
        got = []
        for rank in range(2):
            for stream in range(2):
                cfg = StreamConfig(batch_size=4, workers=2, shuffle_buffer=8, seed=5, rank=rank, world=2)
                got += [s.url for s in stream_shards(shards, epoch, cfg, stream)]
        assert sorted(got) == sorted(s.url for s in shards)
    cfg = StreamConfig(batch_size=4, workers=2, shuffle_buffer=8, seed=5)
    e0 = [s.url for s in stream_shards(shards, 0, cfg, 0)]
    e1 = [s.url for s in stream_shards(shards, 1, cfg, 0)]
    assert e0 != e1  # a new deal every epoch
    few = [DataShard("only", 3)]
    assert stream_shards(few, 0, StreamConfig(4, 4, 8, 0), 3) == few  # more slots than shards


def test_caption_draw_is_seeded_by_key_and_epoch():
    meta = {"text": [f"caption {i}" for i in range(5)], "text_augment_t5": "k2c caption"}
    draws = [draw_caption(meta, "k", seed=0, epoch=e) for e in range(20)]
    assert draws == [draw_caption(meta, "k", seed=0, epoch=e) for e in range(20)]
    assert len(set(draws)) > 2  # different captions in different epochs
    assert draw_caption(meta, "k", seed=0, epoch=0, source="k2c") == "k2c caption"
    assert draw_caption({"text": ["only"]}, "k", seed=0, epoch=0, source="k2c") == "only"


def test_caption_selection_mirrors_laion_text_augment_selection():
    # A join-mode sample: `text` holds the template caption, the K2C one is only in the augment fields.
    meta = {
        "text": ["The sound of dog."],
        "text_augment_t5": "A dog barks.",
        "text_augment_all": ["The sound of dog.", "A dog barks."],
    }
    draws = {
        src: {draw_caption(meta, "k", seed=0, epoch=e, source=src) for e in range(40)}
        for src in CAPTION_SOURCES
    }
    assert draws == {
        "text": {"The sound of dog."},
        "all": {"The sound of dog.", "A dog barks."},
        "k2c": {"A dog barks."},
    }
    # without K2C fields every selection reads `text`, as LAION's select_text does
    plain = {"text": ["a", "b"]}
    for src in CAPTION_SOURCES:
        assert {draw_caption(plain, "k", seed=0, epoch=e, source=src) for e in range(40)} == {"a", "b"}


def test_on_device_views_are_computed_from_what_laions_loader_reads():
    # A 10.5 s clip (fusion views) whose second half sits a few LSB above silence.
    t = np.arange(504_000) / 48_000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * np.where(t < 5, 1.0, 2e-4)
    pcm = quantize_int16(wave)
    plan = plan_views(len(pcm), "k")
    decoded = Decoded("k", None, decode_wave(encode_flac(pcm), plan), plan, ["c"], [])
    got = collate([decoded]).views(torch.device("cpu"))
    # LAION's read of the FLAC: float (v / 32768), then its float32_to_int16 and int16_to_float32
    requantised = (np.clip(pcm.astype(np.float32) / np.float32(32768), -1, 1) * np.float32(32767)).astype(
        np.int16
    )
    laion_input = requantised.astype(np.float32) / np.float32(32767)
    # on CPU: what the pipeline stores (numpy on LAION's input), bit for bit
    stored = compute_views(laion_input, plan).astype(np.float16).astype(np.float32)
    assert plan.longer and np.array_equal(got[0].numpy(), stored)
    # the torch path (accelerators) on the same input within float16 rounding (tests/test_views.py
    # bounds it)
    torch_path = compute_views_torch([torch.from_numpy(laion_input)], [plan])[0].half().float()
    assert np.abs(torch_path.numpy() - stored).max() < 0.07


def test_skip_counts_merge():
    c = SkipCounts()
    c.merge({"missing_member": 2, "truncated_shard": 1})
    c.merge({"missing_member": 1})
    assert c == {"missing_member": 3, "truncated_shard": 1}


@pytest.mark.parametrize("reader", [iter_tar, iter_parquet])
def test_an_unreadable_shard_is_skipped_and_counted(reader, tmp_path):
    counts = SkipCounts()
    assert list(reader(DataShard(str(tmp_path / "gone" / "000000.tar"), 5), counts)) == []
    assert counts == {UNREADABLE_SHARD: 1}

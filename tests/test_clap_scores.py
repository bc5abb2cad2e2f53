"""CLAP scoring (``options.clap``): the pure rules, and the stage in a real run with a tiny ClapModel.

The model is built from a config in the test and saved with ``save_pretrained`` (no download); its
scores mean nothing, only the plumbing is checked here. The signal and the leakage guard are tested
with a trained checkpoint in tests/test_clap_signal.py.
"""

from __future__ import annotations

import json
import math
import os
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from clap_models import tiny_clap_model

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record
from clap_corpus.core.schema import PARQUET_SCHEMA, parquet_schema
from clap_corpus.pipeline.demo import write_demo_corpus
from clap_corpus.pipeline.run import run_corpus
from clap_corpus.pipeline.spec import load_spec
from clap_corpus.transforms.clap_scores import (
    HeldOutEmbeddings,
    NeighbourIndex,
    audio_vector,
    low_score_reject,
    nearest_heldout,
    normalise_caption,
    order_by_score,
    scores_of,
    text_vectors,
    top_fraction_threshold,
)

os.environ["HF_HUB_OFFLINE"] = "1"
RUNNER = ["--runner=FnApiRunner"]


def _record(key: str = "s_a_1", texts=("a", "b", "c"), split="train", source="s") -> Record:
    return Record(key, source, key, LocalFile("/x.wav"), 1, split=split, text=tuple(texts))


# ------------------------------------------------------------------------------------------------
# Pure rules


def test_scores_are_cosines_of_the_stored_float16_embeddings():
    rng = np.random.default_rng(0)
    audio, texts = rng.normal(size=16), rng.normal(size=(3, 16))
    c = scores_of(audio, texts)
    a, t = audio_vector(c), text_vectors(c)
    assert np.allclose(np.linalg.norm(a), 1, atol=1e-3) and t.shape == (3, 16)
    expected = texts @ audio / np.linalg.norm(texts, axis=1) / np.linalg.norm(audio)
    assert np.allclose(c.scores, expected, atol=2e-3)
    assert c.scores == tuple(round(float(x), 6) for x in t.astype(np.float64) @ a.astype(np.float64))
    assert c.best == max(c.scores)


def test_order_by_score_moves_captions_scores_and_embeddings_together():
    rng = np.random.default_rng(1)
    audio, texts = rng.normal(size=8), rng.normal(size=(3, 8))
    r = _record(texts=("x", "y", "z"))
    c = scores_of(audio, texts)
    out = order_by_score(Record(**{**r.__dict__, "clap": c}))
    order = sorted(range(3), key=lambda i: -c.scores[i])
    assert out.text == tuple("xyz"[i] for i in order)
    assert out.clap.scores == tuple(c.scores[i] for i in order)
    assert np.array_equal(text_vectors(out.clap), text_vectors(c)[order])


def test_top_fraction_threshold_keeps_the_ceiling_and_ties():
    assert top_fraction_threshold([0.1, 0.5, 0.3, 0.9], 0.5) == 0.5
    assert top_fraction_threshold([0.1, 0.5, 0.3, 0.9], 0.6) == 0.3  # ceil(2.4) = 3 kept
    assert top_fraction_threshold([0.2, 0.2, 0.2], 0.34) == 0.2  # ties with the last kept stay
    assert top_fraction_threshold([0.1], 1.0) == -math.inf
    assert top_fraction_threshold([], 0.5) == -math.inf


def test_low_score_reject_names_the_rule():
    r = Record(**{**_record().__dict__, "clap": scores_of(np.ones(4), np.array([[1, 0, 0, 0.0]]))})
    assert low_score_reject(r, None, None) is None
    rej = low_score_reject(r, 0.9, None)
    assert rej.code == "low_clap_score" and rej.stage == "clap" and "min_clap_score 0.9" in rej.reason
    rej = low_score_reject(r, None, 0.6)
    assert rej is not None and "top fraction of source 's'" in rej.reason
    assert low_score_reject(_record(), 0.9, 0.9) is None  # not scored: the shard writer decides


def test_faiss_and_numpy_find_the_same_neighbours():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(500, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[[3, 77, 499]] + rng.normal(scale=0.01, size=(3, 32)).astype(np.float32)
    pytest.importorskip("faiss")
    found = []
    for use_faiss in (True, False):
        index = NeighbourIndex(32, use_faiss=use_faiss)
        for start in range(0, 500, 128):  # streamed in blocks
            index.add(base[start : start + 128])
        sims, idx = index.search(queries, 2)
        found.append((sims, idx))
    assert found[0][1][:, 0].tolist() == [3, 77, 499] == found[1][1][:, 0].tolist()
    assert np.allclose(found[0][0], found[1][0], atol=1e-5)


def test_nearest_heldout_returns_the_holder_row():
    v = np.eye(4, dtype=np.float16)
    held = HeldOutEmbeddings.build([(("s", "valid", f"k{i}"), v[i].tobytes()) for i in (2, 0)])
    assert held.holders == (("s", "valid", "k0"), ("s", "valid", "k2"))
    out = nearest_heldout(np.array([[0, 0, 1, 0.0], [0.9, 0.1, 0, 0]], dtype=np.float32), held)
    assert [held.holders[i][2] for i, _ in out] == ["k2", "k0"]
    assert out[0][1] == pytest.approx(1.0)
    empty = HeldOutEmbeddings.build([])
    assert nearest_heldout(np.zeros((1, 4)), empty) == [(-1, -math.inf)]


def test_normalise_caption():
    assert normalise_caption("A dog  barks.") == normalise_caption("a dog barks") == "a dog barks"
    assert normalise_caption("Ｒain, on a roof!") == "rain on a roof"


# ------------------------------------------------------------------------------------------------
# The stage in a real run


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return tiny_clap_model(str(tmp_path_factory.mktemp("tinyclap") / "model"))


def _build(root, clap: dict | None, n_clips: int = 10) -> tuple[dict, str]:
    extra = {"clap": clap} if clap is not None else {}
    spec = write_demo_corpus(
        str(root / "src"), n_clips=n_clips, max_seconds=14.0, k2c_model=None, extra_options=extra
    )
    out = str(root / "out")
    return run_corpus(spec, out, RUNNER), out


def _tar_docs(out: str) -> dict[str, dict]:
    docs = {}
    for split in ("train", "valid", "test"):
        folder = os.path.join(out, "webdataset", "demo", split)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(".tar"):
                with tarfile.open(os.path.join(folder, name)) as tar:
                    for m in tar.getmembers():
                        if m.name.endswith(".json"):
                            docs[m.name[:-5]] = json.load(tar.extractfile(m))
    return docs


def test_scores_reach_json_parquet_and_the_embedding_files(tmp_path, tiny_model):
    # An untrained model puts every clip near every other: the guard only reports here.
    clap = {"model": tiny_model, "max_batch_size": 4, "content_overlap": "report"}
    summary, out = _build(tmp_path, clap)
    assert summary["accounting_ok"] and summary["samples"] == 10
    stage = summary["stages"]["clap"]
    assert stage["eval_overlap_content"] == 0 and stage["closest_cross_split_pairs"]
    assert not any(p["removed"] for p in stage["closest_cross_split_pairs"])
    assert stage["kind"] == "transformers" and stage["scored"] == 10
    assert stage["unscored"] == 4  # the demo's unreadable files (text, empty, cut, missing): rejected later
    assert sum(stage["sources"]["synthetic"]["score_hist"]) == 10
    page = open(os.path.join(out, "report", "index.html"), encoding="utf-8").read()  # noqa: SIM115
    lowest = stage["lowest_pairs"][0]
    # train captions that a held-out clip has too (after normalisation)
    docs = _tar_docs(out)
    heldout = {normalise_caption(t) for d in docs.values() if d["split"] != "train" for t in d["text"]}
    shared = {(d["key"], t) for d in docs.values() if d["split"] == "train" for t in d["text"]}
    shared = {(k, t) for k, t in shared if normalise_caption(t) in heldout}
    assert stage["caption_overlaps"] == len(shared)
    assert {(p["train"]["key"], p["caption"]) for p in stage["caption_overlap_pairs"]} == shared
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()  # noqa: SIM115
    assert "| clap_scores | list of floats |" in card
    assert "<h2>CLAP scores</h2>" in page and f"src='file://{lowest['audio']}'" in page
    assert lowest["score"] == min(max(d["clap_scores"]) for d in _tar_docs(out).values())
    docs = _tar_docs(out)
    assert len(docs) == 10
    for doc in docs.values():
        assert len(doc["clap_scores"]) == len(doc["text"])
        assert doc["clap_score"] == max(doc["clap_scores"])
    for split in summary["splits"]:
        table = pq.read_table(os.path.join(out, "parquet", split, "000000.parquet"))
        assert table.schema.remove_metadata().equals(parquet_schema(("clap",)).remove_metadata())
        emb = pq.read_table(os.path.join(out, "clap", split, "000000.parquet")).to_pylist()
        assert [e["key"] for e in emb] == table.column("key").to_pylist()
        for e, scores in zip(emb, table.column("clap_scores").to_pylist(), strict=True):
            a = np.frombuffer(e["audio_embedding"], "<f2").astype(np.float64)
            t = np.frombuffer(e["text_embeddings"], "<f2").astype(np.float64).reshape(len(scores), -1)
            assert np.allclose(t @ a, scores, atol=1e-6) and e["clap_scores"] == scores
            assert docs[e["key"]]["clap_scores"] == scores


def test_top_fraction_filter_and_caption_order(tmp_path, tiny_model):
    clap = {"model": tiny_model, "keep_top_fraction": 0.5, "order_captions": True, "content_overlap": "off"}
    summary, out = _build(tmp_path, clap, n_clips=12)
    assert summary["accounting_ok"]
    low = summary["rejects_by_code"].get("low_clap_score", 0)
    assert low == 6 and summary["samples"] == 6
    kept = [d["clap_score"] for d in _tar_docs(out).values()]
    rejected = []
    with open(os.path.join(out, "rejects", "manifest", "synthetic.jsonl")) as f:
        lines = f.read().splitlines()
    for line in lines:
        r = json.loads(line)
        if r["code"] == "low_clap_score":
            rejected.append(float(r["reason"].split("score ")[1].split(" ")[0]))
    assert min(kept) >= max(rejected) - 1e-4
    for doc in _tar_docs(out).values():
        assert doc["clap_scores"] == sorted(doc["clap_scores"], reverse=True)


def test_without_the_option_nothing_changes(tmp_path):
    spec = write_demo_corpus(str(tmp_path / "src"), n_clips=4, k2c_model=None, bad_rows=False)
    assert load_spec(spec).options.clap is None
    summary = run_corpus(spec, str(tmp_path / "out"), RUNNER)
    assert "clap" not in summary["stages"]
    assert not os.path.exists(tmp_path / "out" / "clap")
    for split in summary["splits"]:
        folder = tmp_path / "out" / "parquet" / split
        for name in os.listdir(folder):
            schema = pq.read_schema(folder / name)
            assert schema.names == PARQUET_SCHEMA.names
            assert schema.metadata[b"huggingface"] == PARQUET_SCHEMA.metadata[b"huggingface"]
    for doc in _tar_docs(str(tmp_path / "out")).values():
        assert "clap_score" not in doc and "clap_scores" not in doc


def test_a_model_that_cannot_be_loaded_stops_the_run_at_start(tmp_path):
    empty = tmp_path / "nomodel"
    empty.mkdir()
    spec = write_demo_corpus(
        str(tmp_path / "src"),
        n_clips=2,
        k2c_model=None,
        bad_rows=False,
        extra_options={"clap": {"model": str(empty)}},
    )
    from clap_corpus.pipeline.clap_handler import ClapModelUnavailable

    with pytest.raises(ClapModelUnavailable, match=r"options\.clap\.model: cannot load the CLAP model"):
        run_corpus(spec, str(tmp_path / "out"), RUNNER)


def test_near_duplicate_groups_join_other_sources_only():
    from clap_corpus.transforms.clap_scores import near_duplicate_groups

    rng = np.random.default_rng(3)
    base = rng.normal(size=(4, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    near = base[0] + np.float32(0.01) * rng.normal(size=16).astype(np.float32)
    vectors = np.stack([*base, near / np.linalg.norm(near), base[1]])
    members = [("a0", "a", "train"), ("a1", "a", "train"), ("a2", "a", "train"), ("a3", "a", "train")]
    members += [("b0", "b", "train"), ("a1copy", "a", "train")]  # a same-source copy is not joined
    groups = near_duplicate_groups(members, vectors, threshold=0.98)
    assert [[m[0] for m in g] for g, _ in groups] == [["a0", "b0"]]
    assert 0.98 <= groups[0][1] < 1.0


def test_a_run_without_scoring_removes_the_embeddings_of_an_earlier_one(tmp_path, tiny_model):
    clap = {"model": tiny_model, "content_overlap": "off"}
    spec = write_demo_corpus(
        str(tmp_path / "src"), n_clips=4, k2c_model=None, bad_rows=False, extra_options={"clap": clap}
    )
    out = tmp_path / "out"
    run_corpus(spec, str(out), RUNNER)
    assert list((out / "clap").rglob("*.parquet"))
    plain = write_demo_corpus(str(tmp_path / "src"), n_clips=4, k2c_model=None, bad_rows=False)
    run_corpus(plain, str(out), RUNNER)
    assert not list((out / "clap").rglob("*.parquet"))


@pytest.mark.parametrize("fusion", [True, False])
def test_an_embedding_does_not_depend_on_its_batch(tmp_path, fusion):
    """Fused models take the four views, unfused ones view 1; either way a clip's embeddings are the
    same bytes whether Beam hands it over alone or among others (fixed-shape chunks)."""
    from clap_corpus.pipeline.clap_config import ClapConfig
    from clap_corpus.pipeline.clap_handler import Embedder
    from clap_corpus.transforms.clap_scores import clap_input

    model = tiny_clap_model(str(tmp_path / "m"), fusion=fusion)
    embedder = Embedder(ClapConfig(model=model, device="cpu", max_batch_size=4))
    assert embedder.fused is fusion
    rng = np.random.default_rng(4)
    items = [
        clap_input(
            rng.normal(scale=0.1, size=48_000 * s).astype(np.float32), f"k{i}", ("a dog barks", "rain")
        )
        for i, s in enumerate((3, 12, 5, 11, 2))
    ]
    assert [it.longer for it in items] == [False, True, False, True, False]
    together = embedder.embed(items)
    alone = [embedder.embed([it])[0] for it in items]
    for (a1, t1), (a2, t2) in zip(together, alone, strict=True):
        assert a1.shape == (16,) and t1.shape == (2, 16)
        assert a1.tobytes() == a2.tobytes() and t1.tobytes() == t2.tobytes()


def test_caption_overlaps_name_the_heldout_sample():
    from clap_corpus.pipeline.clap_stage import caption_overlaps

    held = {normalise_caption("A dog barks."): ("s", "valid", "s_v_1")}
    train = _record(texts=("a dog  barks", "rain"))
    [pair] = list(caption_overlaps(train, held, ("train",)))
    assert pair["caption"] == "a dog  barks" and pair["heldout"]["key"] == "s_v_1"
    assert not list(caption_overlaps(_record(split="valid", texts=("a dog barks",)), held, ("train",)))


def _digests(root: str) -> dict[str, str]:
    """sha256 of every file a corpus consumer reads (stats, summary, report and card carry times)."""
    import hashlib

    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("stats", "report")]
        for name in files:
            if name not in ("summary.json", "README.md", "plan.json"):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_the_same_spec_gives_the_same_bytes_with_scoring_on(tmp_path, tiny_model):
    clap = {"model": tiny_model, "max_batch_size": 3, "order_captions": True, "min_clap_score": -0.02}
    spec = write_demo_corpus(str(tmp_path / "src"), n_clips=8, k2c_model=None, extra_options={"clap": clap})
    run_corpus(spec, str(tmp_path / "a"), RUNNER)
    run_corpus(spec, str(tmp_path / "b"), RUNNER)
    a, b = _digests(str(tmp_path / "a")), _digests(str(tmp_path / "b"))
    assert any(k.startswith("clap/") for k in a)
    assert a == b


def test_near_duplicates_searched_in_blocks_find_the_same_groups():
    from clap_corpus.transforms.clap_scores import (
        groups_from_edges,
        near_duplicate_groups,
        near_edges,
        near_partition,
    )

    rng = np.random.default_rng(5)
    base = rng.normal(size=(60, 24)).astype(np.float32)
    members = [(f"k{i:02d}", "ab"[i % 2], "train") for i in range(60)]
    vectors = [*base]
    for i in range(0, 20, 3):  # near copies in the other source (and a chain: k60 joins two groups)
        vectors.append(base[i] + np.float32(0.02) * rng.normal(size=24).astype(np.float32))
        members.append((f"k{60 + i:02d}", "ba"[i % 2], "train"))
    v = np.stack(vectors)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    whole = near_duplicate_groups(members, v, threshold=0.99)
    assert len(whole) == 7
    parts = 3
    block = {m: near_partition(m[0], parts) for m in members}
    edges = []
    for i in range(parts):
        for j in range(i, parts):
            li = [n for n, m in enumerate(members) if block[m] == i]
            rj = [n for n, m in enumerate(members) if block[m] == j]
            edges += near_edges(
                [members[n] for n in li], v[li], [members[n] for n in rj], v[rj], 0.99, 8, same_block=i == j
            )
    assert groups_from_edges(edges) == whole
    assert len({block[m] for m in members}) == parts


def test_the_stage_translates_for_dataflow(tmp_path, tiny_model, capsys):
    """`clapcorpus run --template_location` with options.clap: the whole graph, the CLAP stage and its
    block search included, is translated by the real DataflowRunner, offline."""
    from clap_corpus.pipeline.cli import main

    clap = {"model": tiny_model, "near_duplicate_threshold": 0.99, "keep_top_fraction": 0.9}
    spec = write_demo_corpus(str(tmp_path / "src"), n_clips=2, k2c_model=None, extra_options={"clap": clap})
    (tmp_path / "staging").mkdir()
    (tmp_path / "temp").mkdir()
    template = tmp_path / "template.json"
    args = [
        "run", "--spec", spec, "--output", "gs://my-bucket/out", "--runner=DataflowRunner",
        "--project=my-project", "--region=us-central1", "--experiments=use_runner_v2",
        f"--staging_location={tmp_path / 'staging'}", f"--temp_location={tmp_path / 'temp'}",
        f"--template_location={template}", "--dataflow_endpoint=http://localhost:1", "--no_auth",
    ]  # fmt: skip
    assert main(args) == 0
    assert "nothing ran" in capsys.readouterr().out
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners import pipeline_context

    proto = beam_runner_api_pb2.Pipeline.FromString((tmp_path / "staging" / "pipeline.pb").read_bytes())
    names = {t.unique_name: t for t in proto.components.transforms.values()}
    for step in ("CLAP/RunInference", "CLAP/GroupBlocks", "CLAP/TopFraction", "CLAP/ContentGuard"):
        assert any(n.startswith(f"BuildCorpus/{step}") for n in names), step
    # Dataflow groups by encoded key bytes: the stage's group keys must encode deterministically
    context = pipeline_context.PipelineContext(proto.components)
    gbks = {
        n: t for n, t in names.items() if t.spec.urn == "beam:transform:group_by_key:v1" and "/CLAP/" in n
    }
    assert len(gbks) >= 2 and any("GroupBlocks" in n for n in gbks)
    for name, t in gbks.items():
        pcoll = proto.components.pcollections[next(iter(t.inputs.values()))]
        assert context.coders.get_by_id(pcoll.coder_id).key_coder().is_deterministic(), name

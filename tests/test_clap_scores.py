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
from helpers.corpora import build_demo
from helpers.records import make_record

from clap_corpus.core.records import Record
from clap_corpus.core.schema import PARQUET_SCHEMA, parquet_schema
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import load_spec
from clap_corpus.scoring.scores import (
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
    r = make_record("s_a_1", split="train", text=("x", "y", "z"))
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
    r = make_record(
        "s_a_1", split="train", text=("a", "b", "c"), clap=scores_of(np.ones(4), np.array([[1, 0, 0, 0.0]]))
    )
    assert low_score_reject(r, None, None) is None
    rej = low_score_reject(r, 0.9, None)
    assert rej.code == "low_clap_score" and rej.stage == "clap" and "min_clap_score 0.9" in rej.reason
    rej = low_score_reject(r, None, 0.6)
    assert rej is not None and "top fraction of source 's'" in rej.reason
    assert (
        low_score_reject(make_record("s_a_1", split="train", text=("a", "b", "c")), 0.9, 0.9) is None
    )  # not scored: the shard writer decides


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
    build = build_demo(root, n_clips=n_clips, max_seconds=14.0, k2c_model=None, extra_options=extra)
    return build.summary, build.out


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


@pytest.mark.slow
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
    # the report plays a browser-playable excerpt copied next to it, linked relatively
    assert "<h2>CLAP scores</h2>" in page and f"src='audio/clap/{lowest['key']}.opus'" in page
    assert os.path.isfile(os.path.join(out, "report", "audio", "clap", f"{lowest['key']}.opus"))
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


@pytest.mark.slow
def test_top_fraction_filter_and_caption_order(tmp_path, tiny_model):
    clap = {
        "model": tiny_model,
        "keep_top_fraction": 0.5,
        "order_captions": True,
        "content_overlap": "off",
        "trust_model": True,  # an untrained model: the calibration would refuse to remove anything
    }
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
    from clap_corpus.scoring.handler import ClapModelUnavailable

    with pytest.raises(ClapModelUnavailable, match=r"options\.clap\.model: cannot load the CLAP model"):
        run_corpus(spec, str(tmp_path / "out"), RUNNER)


def test_near_duplicate_groups_join_other_sources_only():
    from clap_corpus.scoring.scores import near_duplicate_groups

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


@pytest.mark.slow
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
    from clap_corpus.scoring.config import ClapConfig
    from clap_corpus.scoring.handler import Embedder
    from clap_corpus.scoring.scores import clap_input

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
    from clap_corpus.scoring.stage import caption_overlaps

    held = {normalise_caption("A dog barks."): ("s", "valid", "s_v_1")}
    train = make_record("s_a_1", split="train", text=("a dog  barks", "rain"))
    [pair] = list(caption_overlaps(train, held, ("train",)))
    assert pair["caption"] == "a dog  barks" and pair["heldout"]["key"] == "s_v_1"
    assert not list(
        caption_overlaps(make_record("s_a_1", split="valid", text=("a dog barks",)), held, ("train",))
    )


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


@pytest.mark.slow
def test_the_same_spec_gives_the_same_bytes_with_scoring_on(tmp_path, tiny_model):
    clap = {"model": tiny_model, "max_batch_size": 3, "order_captions": True, "min_clap_score": -0.02}
    spec = write_demo_corpus(str(tmp_path / "src"), n_clips=8, k2c_model=None, extra_options={"clap": clap})
    run_corpus(spec, str(tmp_path / "a"), RUNNER)
    run_corpus(spec, str(tmp_path / "b"), RUNNER)
    a, b = _digests(str(tmp_path / "a")), _digests(str(tmp_path / "b"))
    assert any(k.startswith("clap/") for k in a)
    assert a == b


def test_near_duplicates_searched_in_blocks_find_the_same_groups():
    from clap_corpus.scoring.scores import (
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
                [members[n] for n in li], v[li], [members[n] for n in rj], v[rj], 0.99, same_block=i == j
            )
    assert groups_from_edges(edges) == whole
    assert len({block[m] for m in members}) == parts


def test_the_stage_translates_for_dataflow(tmp_path, tiny_model, capsys):
    """`clapcorpus run --template_location` with options.clap: the whole graph, the CLAP stage and its
    block search included, is translated by the real DataflowRunner, offline."""
    from clap_corpus.pipeline.cli.main import main

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
    for step in (
        "CLAP/RunInference",
        "CLAP/NearDuplicates/GroupBlocks",
        "CLAP/TopFraction",
        "CLAP/ContentGuard",
        "CLAP/Calibration",
    ):
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


# ------------------------------------------------------------------------------------------------
# Near-duplicates: groups larger than any neighbour count, the same for any block count


def _clusters(seed: int = 6, dim: int = 24) -> tuple[list, np.ndarray, list[set[str]]]:
    """Members and unit vectors: unrelated samples of three sources, plus planted clusters larger
    than the old neighbour count (8). In each, one source holds many near-identical copies (cosine
    ~0.9999 to each other) and another source a few versions a little further off (~0.98): every
    copy's nearest neighbours are its own source's copies, the crowding the old search lost them to."""
    rng = np.random.default_rng(seed)
    members, vectors, planted = [], [], []
    for i in range(90):
        members.append((f"u{i:03d}", "abc"[i % 3], "train"))
        vectors.append(rng.normal(size=dim))
    for c, (many, n_many, few, n_few) in enumerate([("a", 17, "b", 1), ("a", 10, "c", 2), ("c", 9, "a", 3)]):
        centre = rng.normal(size=dim)
        centre *= np.sqrt(dim) / np.linalg.norm(centre)
        keys = set()
        for j in range(n_many):
            members.append((f"c{c}{many}{j:02d}", many, "train"))
            vectors.append(centre + 0.01 * rng.normal(size=dim))
            keys.add(members[-1][0])
        for j in range(n_few):
            members.append((f"c{c}{few}{j:02d}", few, "valid" if c == 0 else "train"))
            vectors.append(centre + 0.2 * rng.normal(size=dim))
            keys.add(members[-1][0])
        planted.append(keys)
    v = np.stack(vectors).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v = v.astype(np.float16).astype(np.float32)  # what the records carry
    return members, v, planted


def test_a_cluster_larger_than_the_neighbour_count_is_one_group_across_sources():
    from clap_corpus.scoring.scores import near_duplicate_groups

    members, v, planted = _clusters()
    groups = near_duplicate_groups(members, v, threshold=0.97)
    assert [{m[0] for m in g} for g, _ in groups] == sorted(planted, key=min)
    assert [len(g) for g, _ in groups] == [18, 12, 12]
    assert all(0.97 <= s < 0.99 for _, s in groups)  # joined by the versions of the other source
    assert all(0.97 <= s < 1.0 for _, s in groups)


@pytest.mark.parametrize("search", ["exact", "approximate"])
def test_near_duplicate_groups_are_the_same_for_1_2_and_4_blocks(search):
    from clap_corpus.scoring.scores import (
        groups_from_edges,
        near_duplicate_groups,
        near_edges,
        near_partition,
        plan_search,
    )

    members, v, planted = _clusters()
    lists = 0 if search == "exact" else 12  # 12 lists of ~10 vectors, 8 probed each
    plan = plan_search(len(members), [(m[0], v[i]) for i, m in enumerate(members)], lists=lists)
    assert plan.lists == lists
    whole = near_duplicate_groups(members, v, threshold=0.97, plan=plan)
    assert [{m[0] for m in g} for g, _ in whole] == sorted(planted, key=min)
    for parts in (1, 2, 4):
        block = {m: near_partition(m[0], parts) for m in members}
        edges = []
        for i in range(parts):
            for j in range(i, parts):
                li = [n for n, m in enumerate(members) if block[m] == i]
                rj = [n for n, m in enumerate(members) if block[m] == j]
                edges += near_edges(
                    [members[n] for n in li], v[li], [members[n] for n in rj], v[rj], 0.97, plan, i == j
                )
        assert groups_from_edges(edges) == whole, parts


def test_the_approximate_search_finds_the_pairs_of_the_exact_one():
    from clap_corpus.scoring.scores import near_pairs, plan_search

    rng = np.random.default_rng(7)
    topics = rng.normal(size=(40, 32))
    base = topics[rng.integers(0, 40, 3000)] + 0.6 * rng.normal(size=(3000, 32))
    copies = np.repeat(base[:300], 3, axis=0) + 0.15 * rng.normal(size=(900, 32))  # cosine ~0.99
    v = np.concatenate([base, copies]).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    src = rng.integers(0, 3, len(v))
    keys = [f"k{i:05d}" for i in range(len(v))]
    plan = plan_search(len(v), [(k, v[i]) for i, k in enumerate(keys) if i % 2 == 0], lists=60)

    def found(p):
        pairs = near_pairs(v, src, v, src, 0.95, p)
        return {(min(a, b), max(a, b)) for li, rj, _ in pairs for a, b in zip(li, rj, strict=True)}

    exact, approx = found(None), found(plan)
    assert approx <= exact and len(exact) > 1000
    assert len(approx) / len(exact) >= 0.99


def _with_embeddings(members, v) -> list[Record]:
    from clap_corpus.core.records import ClapScores

    return [
        make_record(
            key,
            source=source,
            split=split,
            text=("x",),
            clap=ClapScores((0.5,), v[i].astype("<f2").tobytes(), b""),
        )
        for i, (key, source, split) in enumerate(members)
    ]


@pytest.mark.parametrize("search", ["exact", "approximate"])
def test_the_beam_search_gives_the_same_groups_for_any_number_of_blocks(search, tmp_path):
    """The stage's own transform on a real Beam runner: 1, 2 and 4 blocks (a performance setting)
    give the same duplicates.jsonl lines, groups of 18 included; keep_first keeps the held-out copy."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from clap_corpus.scoring.config import ClapConfig
    from clap_corpus.scoring.stage import NearDuplicateGroups

    members, v, planted = _clusters()
    records = _with_embeddings(members, v)
    docs_by_parts = {}
    for parts in (1, 2, 4):
        cfg = ClapConfig(
            model="owner/model",
            near_duplicate_threshold=0.97,
            near_duplicate_partitions=parts,
            near_duplicate_search=search,
            trust_model=True,
        )
        out = tmp_path / f"docs_{parts}.json"
        with beam.Pipeline(runner="FnApiRunner") as p:
            calibration = p | "Calibration" >> beam.Create([{}])
            docs, plan = (
                p
                | beam.Create(records)
                | NearDuplicateGroups(cfg, "keep_first", {"a": 0, "b": 1, "c": 2}, ("train",), calibration)
            )
            docs | beam.Map(lambda d, path=str(out): open(path, "w").write(json.dumps(d)))  # noqa: SIM115
            lists = 0 if search == "exact" else round(2 * math.sqrt(len(records)))
            assert_that(plan | beam.Map(lambda d: d.get("lists", 0)), equal_to([lists]), label="plan")
        docs_by_parts[parts] = json.loads(out.read_text())
    assert docs_by_parts[1] == docs_by_parts[2] == docs_by_parts[4]
    docs = docs_by_parts[1]
    assert [{m["key"] for m in d["samples"]} for d in docs] == sorted(planted, key=min)
    first = docs[0]
    assert len(first["samples"]) == 18 and first["samples"][0] == {
        "key": "c0b00",
        "source": "b",
        "split": "valid",
        "kept": True,  # the held-out copy stays
    }
    assert sum(m["kept"] for m in first["samples"]) == 1


@pytest.mark.slow
def test_the_content_guard_searches_a_batch_of_records_per_call(tmp_path, tiny_model, monkeypatch):
    """One faiss call for many train records (it was one per record: 31.6 CPU-ms a record against
    1.4 batched at 125 000 held-out vectors, bench/bench_clap_score.py)."""
    calls = []
    search = NeighbourIndex.search

    def counted(self, queries, k=1):
        calls.append(len(np.atleast_2d(queries)))
        return search(self, queries, k)

    monkeypatch.setattr(NeighbourIndex, "search", counted)
    summary, _ = _build(tmp_path, {"model": tiny_model, "content_overlap": "report"}, n_clips=16)
    trained = summary["splits"]["train"]["samples"]
    assert trained >= 8 and sum(calls) == trained
    assert len(calls) <= 2, calls  # one per bundle of the local runner


@pytest.fixture(scope="module")
def trainer_model(tmp_path_factory) -> str:
    from clap_models import trainer_checkpoint

    return trainer_checkpoint(str(tmp_path_factory.mktemp("trainerclap")))


def test_a_fused_trainer_model_embeds_a_clip_the_same_whatever_the_batching(trainer_model):
    """The bundled trainer's fused stem ran its local branch on the longer clips of a batch only, so
    a clip's arithmetic changed with how many of its batch-mates were long: Beam's batching changed
    the bytes; so did max_batch_size (the model ran on chunks of that many) and the process's torch
    threads. Now: the same bytes for batches of 1, 2 and 7 clips, any max_batch_size, any threads."""
    import torch

    from clap_corpus.scoring.config import ClapConfig
    from clap_corpus.scoring.handler import Embedder
    from clap_corpus.scoring.scores import clap_input

    rng = np.random.default_rng(4)
    seconds = (3, 12, 5, 11, 2, 14, 13, 4, 15)
    items = [
        clap_input(rng.normal(scale=0.1, size=int(48_000 * s)).astype(np.float32), f"k{i}", ("a dog barks",))
        for i, s in enumerate(seconds)
    ]
    assert {it.longer for it in items} == {True, False}
    reference, before = None, torch.get_num_threads()
    try:
        for chunk, threads in ((4, 1), (8, 2), (32, 1), (32, 2)):
            torch.set_num_threads(threads)  # what the process was set to: the embedder runs on one
            embedder = Embedder(ClapConfig(model=trainer_model, device="cpu", max_batch_size=chunk))
            assert embedder.kind == "trainer" and embedder.model.cfg.audio.fusion
            for size in (len(items), 1, 2, 7):
                got = []
                for start in range(0, len(items), size):
                    got += [
                        (a.tobytes(), t.tobytes()) for a, t in embedder.embed(items[start : start + size])
                    ]
                reference = reference or got
                assert got == reference, (chunk, threads, size)
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_rerun_of_the_same_spec_keeps_every_finished_shard(tmp_path, trainer_model):
    """Identical runs gave other embeddings (a fused model's arithmetic followed Beam's batches), so a
    rerun rebuilt finished shards."""
    clap = {"model": trainer_model, "max_batch_size": 3, "content_overlap": "report"}
    spec = write_demo_corpus(
        str(tmp_path / "src"),
        n_clips=16,
        max_seconds=14.0,
        k2c_model=None,
        shard_size=2,
        extra_options={"clap": clap},
    )
    out = str(tmp_path / "out")
    first = run_corpus(spec, out, RUNNER)
    shards = sum(s["shards"] for s in first["splits"].values())
    assert first["accounting_ok"] and shards >= 4
    # the same spec on two worker threads: Beam batches the clips otherwise, the shards stay
    again = run_corpus(
        spec, out, [*RUNNER, "--direct_num_workers=2", "--direct_running_mode=multi_threading"]
    )
    assert again["shards_skipped_as_complete"] == shards


def _add_rows(spec_path: str, rows: list[tuple[str, np.ndarray, str]]) -> None:
    """Append clips (file name, float samples at 48 kHz, caption) to the demo's manifest and count."""
    import yaml

    from clap_corpus.pipeline.demo import synth

    src = os.path.dirname(spec_path)
    with open(os.path.join(src, "raw", "manifest.jsonl"), "a", encoding="utf-8") as f:
        for name, samples, caption in rows:
            with open(os.path.join(src, "raw", name), "wb") as g:
                g.write(synth.encode_audio(samples, 48_000, "wav"))
            f.write(json.dumps({"audio": name, "id": name.split(".")[0], "captions": [caption]}) + "\n")
    with open(spec_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    doc["sources"][0]["expected_count"] += len(rows)
    with open(spec_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


@pytest.mark.slow
def test_keep_top_fraction_does_not_count_silent_clips(tmp_path, tiny_model):
    clap = {"model": tiny_model, "keep_top_fraction": 0.5, "content_overlap": "off", "trust_model": True}
    spec = write_demo_corpus(
        str(tmp_path / "src"), n_clips=10, k2c_model=None, bad_rows=False, extra_options={"clap": clap}
    )
    t = np.arange(48_000 * 3) / 48_000
    quiet = (10 ** (-80 / 20) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # -80 dBFS: `silent`
    silent = [
        (f"silent_{i}.wav", s, "a quiet room")
        for i, s in enumerate([np.zeros(48_000 * 3, np.float32), quiet] * 2)
    ]
    _add_rows(spec, silent)
    summary = run_corpus(spec, str(tmp_path / "out"), RUNNER)
    assert summary["accounting_ok"]
    codes = summary["rejects_by_code"]
    assert codes["silent"] == 4  # the shard writer's code, as without scoring
    stage = summary["stages"]["clap"]
    assert stage["scored"] == 10 and stage["unscored"] == 4  # the silent ones are not scored
    assert codes["low_clap_score"] == 10 - math.ceil(0.5 * 10) and summary["samples"] == 5


# ------------------------------------------------------------------------------------------------
# Calibration: nothing is removed by a model that cannot tell


def _calibration_clips(n: int, spread: float, copy_noise: float, caption_signal: float, seed: int = 8):
    from clap_corpus.scoring.scores import CalibrationClip

    rng = np.random.default_rng(seed)
    common = rng.normal(size=32)
    clips = []
    for i in range(n):
        a = common + spread * rng.normal(size=32)
        t = caption_signal * a + rng.normal(size=(2, 32))
        c = a + copy_noise * rng.normal(size=32)
        unit = [x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (a, t, c)]
        clips.append(CalibrationClip(f"k{i:03d}", *unit[:2], (f"caption {i}", f"another {i}"), unit[2]))
    return clips


def test_calibration_refuses_a_model_that_cannot_tell_and_trusts_one_that_can():
    from clap_corpus.scoring.scores import calibrate, removal_allowed

    thresholds = {"content_threshold": 0.95, "near_duplicate_threshold": 0.97}
    # every clip near every other (an untrained or collapsed model), captions unrelated to the audio
    weak = calibrate(_calibration_clips(64, spread=0.05, copy_noise=0.01, caption_signal=0.0), thresholds)
    assert weak["clips"] == 64 and 0.4 < weak["captions"]["caption_wins"] < 0.6
    assert weak["audio"]["different_clips"]["median"] > 0.95
    for what in ("captions", "content_threshold", "near_duplicate_threshold"):
        allowed, why = removal_allowed(weak, what)
        assert not allowed and why, what
        assert removal_allowed(weak, what, trust_model=True) == (True, "")
    assert "of pairs of different clips have cosine >= 0.95" in removal_allowed(weak, "content_threshold")[1]
    assert "own caption" in removal_allowed(weak, "captions")[1]
    # clips far apart, copies close, captions that say what the audio is
    good = calibrate(_calibration_clips(64, spread=3.0, copy_noise=0.05, caption_signal=3.0), thresholds)
    assert good["captions"]["caption_wins"] > 0.95 and good["audio"]["separation"] > 0.99
    for what in ("captions", "content_threshold", "near_duplicate_threshold"):
        assert removal_allowed(good, what) == (True, ""), what
    d = good["thresholds"]["content_threshold"]
    assert d["copies_at_or_above"] == 1.0 and d["different_clips_at_or_above"] == 0.0
    assert (
        good["audio"]["different_clips"]["max"] < good["suggested_threshold"] < good["audio"]["copies"]["min"]
    )
    # too few clips is no evidence
    few = calibrate(_calibration_clips(8, spread=3.0, copy_noise=0.05, caption_signal=3.0), thresholds)
    assert not removal_allowed(few, "content_threshold")[0]
    assert "only 8 clips" in removal_allowed(few, "captions")[1]


@pytest.mark.slow
def test_a_model_that_cannot_tell_removes_nothing_and_the_run_says_why(tmp_path, tiny_model):
    """The defaults that used to destroy (content removal at 0.95), a top fraction and near-duplicate
    removal, with an untrained model: nothing is removed, the summary and the console say why."""
    from clap_corpus.pipeline.launch.run import format_report
    from clap_corpus.pipeline.outputs.summary_model import RunSummary

    clap = {"model": tiny_model, "keep_top_fraction": 0.5, "near_duplicate_threshold": 0.97}
    spec = write_demo_corpus(
        str(tmp_path / "src"),
        n_clips=24,
        max_seconds=12.0,
        k2c_model=None,
        bad_rows=False,
        extra_options={"clap": clap, "duplicates": "keep_first"},
    )
    import yaml

    other = write_demo_corpus(
        str(tmp_path / "other"), n_clips=24, seed=1, max_seconds=12.0, k2c_model=None, bad_rows=False
    )
    with open(spec, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    raw = os.path.join(os.path.dirname(other), "raw")
    doc["sources"].append(
        {**doc["sources"][0], "name": "other", "manifest": f"{raw}/manifest.jsonl", "audio_root": raw}
    )  # other clips in a second source
    with open(spec, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    summary = run_corpus(spec, str(tmp_path / "out"), RUNNER)
    assert summary["accounting_ok"]
    codes = summary["rejects_by_code"]
    for code in ("low_clap_score", "eval_overlap_content", "near_duplicate_audio"):
        assert code not in codes, code
    stage = summary["stages"]["clap"]
    assert stage["calibration"]["clips"] == 48 and stage["calibration"]["captions"]["trusted"] is False
    assert set(stage["removal_refused"]) == {"low_clap_score", "eval_overlap_content", "near_duplicate_audio"}
    assert stage["withheld"]["low_clap_score"] == 24  # half of each source would have gone
    assert stage["withheld"]["eval_overlap_content"] > 0 and stage["withheld"]["near_duplicate_audio"] > 0
    printed = format_report(RunSummary.from_json(summary))
    assert "NOTHING REMOVED by CLAP" in printed, printed
    # exact and near-duplicate groups, id and content removals: each on its own line
    near = stage["near_duplicates"]
    assert near["groups"] > 0 and near["removed"] == 0 and near["search"]["index"] == "exact"
    assert f"near duplicates (CLAP cosine >= 0.97, exact search): {near['groups']} groups" in printed
    assert "duplicates (keep_first): 0 groups, 0 samples, 0 removed, exact audio" in printed
    assert "leakage guard: 0 train samples removed by id" in printed
    assert "leakage guard: 0 train samples removed by CLAP content" in printed
    page = open(os.path.join(str(tmp_path / "out"), "report", "index.html"), encoding="utf-8").read()  # noqa: SIM115
    assert "Nothing was removed by" in page and "Calibration on this run" in page


# ------------------------------------------------------------------------------------------------
# The report's players, in a real browser

CHROMIUM = next(
    (p for p in map(__import__("shutil").which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)

_PROBE = """<!DOCTYPE html><html><body><iframe id="f" src="index.html"></iframe><pre id="out">pending</pre>
<script>
document.getElementById('f').onload = async () => {
  const audios = [...document.getElementById('f').contentDocument.querySelectorAll('audio')];
  const one = a => new Promise(done => {
    const report = () => done({src: a.getAttribute('src'), seconds: a.dataset.seconds || null,
                                duration: a.duration, error: a.error ? a.error.code : null});
    if (a.readyState >= 1 || a.error) return report();
    a.addEventListener('loadedmetadata', report); a.addEventListener('error', report);
    a.preload = 'metadata'; a.load();
  });
  document.getElementById('out').textContent = JSON.stringify(await Promise.all(audios.map(one)));
};
</script></body></html>"""


def _players_in_chromium(report_dir: str, profile: str) -> list[dict]:
    """Every <audio> of report_dir/index.html as headless Chromium loads it: src, duration, error."""
    import re
    import subprocess

    probe = os.path.join(report_dir, "_probe.html")
    with open(probe, "w", encoding="utf-8") as f:
        f.write(_PROBE)
    try:
        page = subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", f"--user-data-dir={profile}", "--allow-file-access-from-files",
                "--virtual-time-budget=30000", "--dump-dom", f"file://{probe}",
            ],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
    finally:
        os.remove(probe)
    found = re.search(r'<pre id="out">(.*)</pre>', page, re.S)
    assert found and found.group(1) != "pending", page[-2000:]
    return json.loads(found.group(1))


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium on PATH (apt-get install chromium)")
def test_every_report_player_plays_in_a_browser_wherever_the_report_goes(tmp_path, tiny_model):
    """The CLAP section lists the lowest pairs, the closest train / held-out pairs (both sides), the
    near-duplicate groups and the caption overlaps, each clip with a player; the players link excerpts
    copied next to the report (Ogg Opus, whatever the source's codec: the demo's are MP3, Vorbis, Opus,
    AAC, FLAC and WAV), relatively, so a moved report still plays. Headless Chromium loads every one
    and reports the excerpt's duration. Needs Chromium on PATH (skipped without it)."""
    import shutil

    import yaml

    clap = {
        "model": tiny_model,
        "content_overlap": "report",
        "near_duplicate_threshold": 0.9,
        "report_pairs": 6,
    }
    spec = write_demo_corpus(
        str(tmp_path / "src"), n_clips=12, max_seconds=14.0, k2c_model=None, extra_options={"clap": clap}
    )
    other = write_demo_corpus(
        str(tmp_path / "other"), n_clips=6, seed=2, max_seconds=14.0, k2c_model=None, bad_rows=False
    )
    with open(spec, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    raw = os.path.join(os.path.dirname(other), "raw")
    doc["sources"].append(
        {
            **doc["sources"][0],
            "name": "other",
            "manifest": f"{raw}/manifest.jsonl",
            "audio_root": raw,
            "expected_count": 6,
        }
    )
    with open(spec, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    out = tmp_path / "out"
    summary = run_corpus(spec, str(out), RUNNER)
    stage = summary["stages"]["clap"]
    listed = {p["key"] for p in stage["lowest_pairs"]}
    listed |= {p[side]["key"] for p in stage["closest_cross_split_pairs"] for side in ("train", "heldout")}
    listed |= {m["key"] for g in stage["near_duplicates"]["listed"] for m in g["samples"]}
    assert stage["closest_cross_split_pairs"] and stage["near_duplicates"]["listed"]
    assert set(stage["excerpts"]) == listed | {
        p[side]["key"] for p in stage["caption_overlap_pairs"] for side in ("train", "heldout")
    }
    moved = tmp_path / "moved" / "report"
    shutil.copytree(out / "report", moved)
    shutil.rmtree(out / "report")  # nothing may point back at the output folder
    players = _players_in_chromium(str(moved), str(tmp_path / "profile"))
    print(f"{len(players)} players, durations:", sorted(round(p["duration"], 3) for p in players))
    clap_players = [p for p in players if p["src"].startswith("audio/clap/")]
    assert {p["src"].split("/")[-1][: -len(".opus")] for p in clap_players} == set(stage["excerpts"])
    assert len(players) > len(clap_players)  # the examples' FLAC players too
    for p in players:
        assert p["error"] is None and p["duration"] and p["duration"] > 0, p
    for p in clap_players:
        assert abs(p["duration"] - float(p["seconds"])) < 0.03, p  # an Opus frame at most
        assert float(p["seconds"]) == min(10.0, float(p["seconds"]))

"""The trainer reads a corpus without Apache Beam: its imports, and its storage through fsspec (local
paths and URLs, here fsspec's real in-memory filesystem standing in for gs:// and s3://)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import fsspec
import pytest
from trainer_samples import sample_members, write_tar

from clap_corpus.core.layout import Layout
from clap_corpus.trainer.data import DataError, SkipCounts, iter_tar, list_shards, resolve_layout
from clap_corpus.trainer.storage import match

# Which import brings in Beam, if one does: the test's failure names the chain of project files.
NO_BEAM = textwrap.dedent(
    """
    import sys, traceback

    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name == "apache_beam":
                chain = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                         if f.filename.startswith(sys.argv[1])]
                print("apache_beam imported by " + " <- ".join(reversed(chain)))
                sys.exit(1)

    sys.meta_path.insert(0, Watch())
    import clap_corpus.trainer.cli, clap_corpus.trainer.train
    import clap_corpus.trainer.evaluate, clap_corpus.trainer.data
    assert "apache_beam" not in sys.modules
    """
)


# Beam made unimportable, as on a machine that only trains: then `python -m trainer` trains and evaluates.
TRAIN_WITHOUT_BEAM = textwrap.dedent(
    """
    import json, sys

    class NoBeam:
        def find_spec(self, name, path=None, target=None):
            if name == "apache_beam" or name.startswith("apache_beam."):
                raise ImportError("apache_beam is not installed here")

    sys.meta_path.insert(0, NoBeam())
    from clap_corpus.trainer.__main__ import main

    data, out = sys.argv[1], sys.argv[2]
    model = ["--audio-encoder", "cnn", "--audio-size", "micro", "--text-model", "tiny", "--joint-dim", "16"]
    run = ["--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1", "--workers", "0", "--threads", "1"]
    assert main(["train", "--data", data, "--output", out, *model, *run, "--log-level", "WARNING"]) == 0
    assert main(["eval", "--checkpoint", out, "--data", data, "--json", out + "/report.json"]) == 0
    assert "apache_beam" not in sys.modules
    """
)


def test_training_imports_no_beam():
    root = os.getcwd()
    proc = subprocess.run(
        [sys.executable, "-c", NO_BEAM, root],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", root)},
        cwd=root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_python_m_trainer_trains_and_evaluates_without_beam(tmp_path):
    root = str(tmp_path / "built")
    layout = Layout(root, "minidemo")
    for split, shards in (("train", 2), ("valid", 1)):
        os.makedirs(layout.webdataset_dir(split))
        sizes = {}
        for s in range(shards):
            keys = [f"{split}{s}-{i}" for i in range(8)]
            write_tar(
                layout.tar_path(split, f"{s:06d}"), [m for k in keys for m in sample_members(k, mel=False)]
            )
            sizes[f"{s:06d}.tar"] = len(keys)
        with open(layout.sizes_path(split), "w") as f:
            json.dump(sizes, f)
    with open(layout.summary_path(), "w") as f:
        json.dump({"corpus": "minidemo"}, f)
    out = str(tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN_WITHOUT_BEAM, root, out],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd()),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        },
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["clips"] == 8


@pytest.fixture
def memory_corpus(tmp_path):
    """A two-shard split under memory://, with its sizes.json and summary.json as the pipeline writes."""
    root = f"memory:///corpus-{tmp_path.name}"  # memory:// paths are rooted at /
    layout = Layout(root, "memdemo")
    fs = fsspec.filesystem("memory")
    sizes = {}
    for s in range(2):
        local = str(tmp_path / f"{s:06d}.tar")
        write_tar(local, [m for i in range(3) for m in sample_members(f"k{s}-{i}", mel=False)])
        with open(local, "rb") as f:
            fs.pipe(layout.tar_path("train", f"{s:06d}"), f.read())
        sizes[f"{s:06d}.tar"] = 3
    fs.pipe(layout.sizes_path("train"), json.dumps(sizes).encode())
    fs.pipe(layout.summary_path(), json.dumps({"corpus": "memdemo"}).encode())
    yield root
    fs.rm(root, recursive=True)


def test_a_corpus_behind_a_url_is_read_through_fsspec(memory_corpus):
    layout = resolve_layout(memory_corpus)
    assert layout.corpus == "memdemo"
    shards = list_shards(layout, "train")
    assert [s.url for s in shards] == [
        f"{memory_corpus}/webdataset/memdemo/train/{s:06d}.tar" for s in (0, 1)
    ]
    counts = SkipCounts()
    keys = [r.key for s in shards for r in iter_tar(s, counts)]
    assert keys == [f"k{s}-{i}" for s in (0, 1) for i in range(3)] and not counts
    # without summary.json the corpus name comes from the folder, found by a glob on the URL
    fsspec.filesystem("memory").rm(layout.summary_path())
    assert resolve_layout(memory_corpus).corpus == "memdemo"
    assert match(f"{memory_corpus}/webdataset/*/train/*.tar") == [s.url for s in shards]


def test_a_url_no_installed_filesystem_serves_stops_clearly():
    with pytest.raises(DataError, match="nosuchproto"):
        resolve_layout("nosuchproto://bucket/corpus")
    with pytest.raises(DataError, match="nosuchproto"):
        list_shards(Layout("nosuchproto://bucket/corpus", "x"), "train")


def test_the_demo_folder_itself_is_accepted_and_an_empty_one_says_what_to_pass(tmp_path):
    demo = tmp_path / "demo-run"  # what `clapcorpus demo --output demo-run` leaves: source/ and corpus/
    (demo / "source").mkdir(parents=True)
    layout = Layout(str(demo / "corpus"), "demo")
    os.makedirs(layout.webdataset_dir("train"))
    write_tar(
        layout.tar_path("train", "000000"), [m for k in ("a", "b") for m in sample_members(k, mel=False)]
    )
    with open(layout.sizes_path("train"), "w") as f:
        json.dump({"000000.tar": 2}, f)
    with open(layout.summary_path(), "w") as f:
        json.dump({"corpus": "demo"}, f)
    found = resolve_layout(str(demo))
    assert (found.root, found.corpus) == (str(demo / "corpus"), "demo")
    assert [s.samples for s in list_shards(found, "train")] == [2]
    assert resolve_layout(str(demo / "corpus")).root == str(demo / "corpus")  # the corpus folder as before
    with pytest.raises(DataError, match=r"no built corpus here .*clapcorpus run --output"):
        resolve_layout(str(demo / "source"))


def test_a_hub_text_model_missing_from_the_cache_stops_before_any_download(tmp_path, capsys):
    from clap_corpus.trainer.__main__ import main as trainer_main

    layout = Layout(str(tmp_path / "built"), "mini")
    os.makedirs(layout.webdataset_dir("train"))
    keys = [f"k{i}" for i in range(4)]
    write_tar(layout.tar_path("train", "000000"), [m for k in keys for m in sample_members(k, mel=False)])
    with open(layout.sizes_path("train"), "w") as f:
        json.dump({"000000.tar": 4}, f)
    with open(layout.summary_path(), "w") as f:
        json.dump({"corpus": "mini"}, f)
    argv = ["train", "--data", layout.root, "--output", str(tmp_path / "run"), "--audio-encoder", "cnn"]
    argv += ["--text-model", "no-such-org/no-such-model-xyz", "--batch-size", "2", "--workers", "0"]
    assert trainer_main(argv) == 2
    err = capsys.readouterr().err
    assert "not in the Hugging Face cache" in err and "`hf download no-such-org/no-such-model-xyz`" in err

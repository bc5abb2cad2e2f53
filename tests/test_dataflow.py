"""The graph translates for Dataflow, offline: the real DataflowRunner, up to the service call.

DataflowRunner with ``--template_location`` on a local path does everything a submission does except
the API call: it applies Dataflow's overrides and checks (deterministic GroupByKey key coders,
CombineFn rules, side-input forms), snapshots the graph as a runner-API proto, builds and stages the
``--setup_file`` sdist, and writes the job request (the template) to the file. Staging and temp
locations are local folders and ``--dataflow_endpoint`` points at a port nothing listens on (the only
"mock": the service is never called with a template location). A mistake in the graph fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, WorkerOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.typehints import Tuple
from docs_text import docs_page, fenced_blocks
from source_tree import FOLDERS

from clap_corpus.pipeline.spec.beam_options import pipeline_options
from clap_corpus.pipeline.spec.corpus import parse_spec
from clap_corpus.pipeline.stages.graph import BuildCorpus

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("clap_corpus", *FOLDERS)

# docs/dataflow.md's Dataflow command, minus the credentials-bound parts (temp/staging become local).
README_ARGS = [
    "--runner=DataflowRunner",
    "--project=my-project",
    "--region=us-central1",
    "--machine_type=n2-standard-8",
    "--max_num_workers=50",
    "--experiments=use_runner_v2",
]
GPU_ARGS = [
    "--machine_type=g2-standard-8",
    "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
    "--sdk_container_image=us-central1-docker.pkg.dev/my-project/clapcorpus/worker-gpu:0.1.0",
]


def cloud_spec():
    doc = {
        "corpus": "laion-mini",
        "options": {"shard_size": 512},
        "sources": [
            {
                "name": "freesound",
                "adapter": "generic",
                "manifest": "gs://my-bucket/freesound/metadata.jsonl",
                "audio_root": "gs://my-bucket/freesound/audio",
                "license": "CC-BY-4.0",
            },
            {
                "name": "clotho",
                "adapter": "generic",
                "manifest": "gs://my-bucket/clotho/manifest.csv",
                "audio_root": "gs://my-bucket/clotho/audio",
                "split_map": {"development": "train", "validation": "valid", "evaluation": "test"},
            },
        ],
    }
    return parse_spec(doc, "gs://my-bucket/specs/laion-mini.yaml")


def translate(tmp: Path, extra_args: list[str], build=None) -> dict:
    """Run DataflowRunner up to the job request; return what it produced."""
    staging, temp = tmp / "staging", tmp / "temp"
    staging.mkdir(parents=True, exist_ok=True)
    temp.mkdir(exist_ok=True)
    template = tmp / "template.json"
    args = [
        *README_ARGS,
        f"--staging_location={staging}",
        f"--temp_location={temp}",
        f"--template_location={template}",
        "--dataflow_endpoint=http://localhost:1",
        "--no_auth",
        *extra_args,
    ]
    p = beam.Pipeline(options=pipeline_options(args))
    if build is None:
        _ = p | "BuildCorpus" >> BuildCorpus(cloud_spec(), "gs://my-bucket/corpora/laion-mini")
    else:
        build(p)
    p.run()
    proto = beam_runner_api_pb2.Pipeline.FromString((staging / "pipeline.pb").read_bytes())
    return {"template": json.loads(template.read_text()), "proto": proto, "staging": staging}


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    # Beam builds the sdist with `python setup.py sdist` in the setup file's folder.
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return translate(tmp_path_factory.mktemp("dataflow"), ["--setup_file=./setup.py"])
    finally:
        os.chdir(cwd)


def _labels(proto) -> dict[str, beam_runner_api_pb2.PTransform]:
    return {t.unique_name: t for t in proto.components.transforms.values()}


def test_job_request_is_written_with_the_options_that_matter(staged):
    env = staged["template"]["environment"]
    opts = env["sdkPipelineOptions"]["options"]
    assert opts["project"] == "my-project" and opts["region"] == "us-central1"
    assert opts["setup_file"] == "./setup.py" and opts["save_main_session"] is False
    pool = env["workerPools"][0]
    assert pool["machineType"] == "n2-standard-8"
    assert int(pool["autoscalingSettings"]["maxNumWorkers"]) == 50
    assert "use_runner_v2" in env["experiments"]
    staged_names = {p["name"] for p in pool["packages"]}
    assert "workflow.tar.gz" in staged_names  # the package, built from setup.py, for every worker
    # The request the service would get stays far under its 10 MB limit; the graph is staged apart.
    assert len(json.dumps(staged["template"])) < 1_000_000
    # A DoFn that captured a table or a model would show up here first.
    assert (staged["staging"] / "pipeline.pb").stat().st_size < 2_000_000


def test_every_stage_is_in_the_translated_graph(staged):
    names = _labels(staged["proto"])
    for stage in (
        "ReadManifests",
        "Spread",
        "Captions",
        "Split",
        "ShardBoundaries",
        "WritePlan",
        "AssignShard",
        "GroupByShard",
        "WriteShards",
        "WriteEarlyRejects",
        "CountInputs",
        "Finalize",
    ):
        assert any(n == f"BuildCorpus/{stage}" or n.startswith(f"BuildCorpus/{stage}/") for n in names), stage


def test_group_by_key_coders_are_deterministic(staged):
    """Dataflow groups by encoded key bytes: every GroupByKey key coder must be deterministic."""
    from apache_beam.runners import pipeline_context

    proto = staged["proto"]
    context = pipeline_context.PipelineContext(proto.components)
    gbks = [
        t
        for t in proto.components.transforms.values()
        if t.spec.urn == common_urns.primitives.GROUP_BY_KEY.urn
    ]
    assert len(gbks) >= 3
    for t in gbks:
        pcoll = proto.components.pcollections[next(iter(t.inputs.values()))]
        coder = context.coders.get_by_id(pcoll.coder_id)
        assert coder.is_kv_coder(), t.unique_name
        assert coder.key_coder().is_deterministic(), t.unique_name
    # and the keys our graph really uses encode the same way twice
    shard_key = context.coders.get_by_id(
        proto.components.pcollections[
            next(iter(_labels(proto)["BuildCorpus/GroupByShard"].inputs.values()))
        ].coder_id
    ).key_coder()
    assert shard_key.encode(("train", "000000")) == shard_key.encode(("train", "000000"))


class ShardKey:
    """A key type with its own coder, as a later stage might introduce."""

    def __init__(self, split: str, shard: str):
        self.split, self.shard = split, shard


class ShardKeyCoder(beam.coders.Coder):
    # No is_deterministic(): Beam must assume equal keys may encode differently.
    def encode(self, value: ShardKey) -> bytes:
        return json.dumps(vars(value)).encode()

    def decode(self, encoded: bytes) -> ShardKey:
        return ShardKey(**json.loads(encoded))


beam.coders.registry.register_coder(ShardKey, ShardKeyCoder)


def _group_by_custom_key(p):
    return (
        p
        | beam.Create([("train", "000000"), ("train", "000000")])
        | beam.Map(lambda t: (ShardKey(*t), 1)).with_output_types(Tuple[ShardKey, int])
        | "GroupByShardKey" >> beam.GroupByKey()
    )


def test_a_non_deterministic_group_key_fails_translation(tmp_path):
    """Dataflow groups by the encoded key bytes: a key coder that may not be deterministic is refused."""
    with pytest.raises(ValueError, match="deterministic"):
        translate(tmp_path, [], _group_by_custom_key)


def test_an_unpicklable_dofn_argument_fails_translation(tmp_path):
    spec = cloud_spec()

    class OpenFileArgument(BuildCorpus):
        """A stage handed an open file (a manifest, say) instead of its path."""

        def expand(self, pbegin):
            manifest = open(__file__, "rb")  # noqa: SIM115 (the mistake under test)
            try:
                _ = pbegin | "Rows" >> beam.Create([1]) | "ReadsFile" >> beam.Map(lambda x, f: x, manifest)
            finally:
                manifest.close()
            return super().expand(pbegin)

    with pytest.raises(Exception, match=r"(?i)pickle"):
        translate(tmp_path, [], lambda p: p | OpenFileArgument(spec, "gs://my-bucket/out"))


def _sdist_members(staged) -> set[str]:
    with tarfile.open(staged["staging"] / "workflow.tar.gz") as tf:
        names = tf.getnames()
    root = names[0].split("/", 1)[0]
    return {n[len(root) + 1 :] for n in names if "/" in n}


def test_staged_package_holds_every_module_and_its_data(staged):
    members = _sdist_members(staged)
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).as_posix()
            if "__pycache__" not in rel:
                assert rel in members, f"{rel} is not in the sdist the workers install"
    data_globs = {"manifests": ["specs/*.yaml", "data/*"], "k2c": ["tiny/model/*", "tiny/*.json"]}
    for pkg, globs in data_globs.items():
        for g in globs:
            for path in (REPO / pkg).glob(g):
                if path.is_file():
                    assert path.relative_to(REPO).as_posix() in members


def test_package_data_goes_into_the_sdist(tmp_path):
    """setup.py ships the k2c model and the specs (if present) to the workers: checked on a copy."""
    for name in ("setup.py", *PACKAGES):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / name)
    extra = ["k2c/tiny/model/model.safetensors", "k2c/tiny/model/config.json", "manifests/specs/probe.yaml"]
    for rel in extra:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (tmp_path / rel).exists():
            (tmp_path / rel).write_bytes(b"probe")
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", "dist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for rel in extra:
        assert rel in names


UNPICKLE_ALL = r"""
import sys
root = sys.argv[1]
# Only the staged package may provide our modules: drop the editable install and the repo.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in getattr(f, "__name__", "").lower()]
sys.path[:] = [root] + [p for p in sys.path if p not in ("", ".", sys.argv[2])]
from apache_beam.internal import pickler
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

proto = beam_runner_api_pb2.Pipeline.FromString(open(sys.argv[3], "rb").read())
n = 0
for t in proto.components.transforms.values():
    if t.spec.urn == common_urns.primitives.PAR_DO.urn:
        payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload).do_fn.payload
    elif t.spec.urn in (common_urns.composites.COMBINE_PER_KEY.urn,
                        common_urns.composites.COMBINE_GLOBALLY.urn):
        payload = beam_runner_api_pb2.CombinePayload.FromString(t.spec.payload).combine_fn.payload
    else:
        continue
    if payload:
        pickler.loads(payload)
        n += 1
ours = {m: mod.__file__ for m, mod in sys.modules.items()
        if m.split(".")[0] == "clap_corpus" and mod.__file__}
outside = {m: f for m, f in ours.items() if not f.startswith(root)}
assert not outside, outside
assert "clap_corpus.pipeline.stages.graph" in ours, sorted(ours)
print(n, len(ours))
"""


def test_workers_can_load_every_dofn_from_the_staged_package_alone(staged, tmp_path):
    """What a Dataflow worker does first: install the sdist, unpickle the graph's functions."""
    root = tmp_path / "site"
    # As the worker does (pip install of the staged sdist), without fetching build tools: setup.py's
    # package_dir mapping is what puts pipeline/ under clap_corpus.pipeline.
    install = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"),
            *("--target", str(root), str(staged["staging"] / "workflow.tar.gz")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    proc = subprocess.run(
        [sys.executable, "-c", UNPICKLE_ALL, str(root), str(REPO), str(staged["staging"] / "pipeline.pb")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_fns, n_modules = map(int, proc.stdout.split())
    assert n_fns >= 10 and n_modules >= 5


def test_custom_container_with_gpu_options(tmp_path):
    """The K2C GPU variant: our image (package preinstalled, nothing staged) on L4 workers."""
    out = translate(tmp_path, GPU_ARGS)
    env = out["template"]["environment"]
    pool = env["workerPools"][0]
    image = GPU_ARGS[-1].split("=", 1)[1]
    assert pool["machineType"] == "g2-standard-8"
    assert {c["containerImage"] for c in pool["sdkHarnessContainerImages"]} == {image}
    assert "workflow.tar.gz" not in {p["name"] for p in pool.get("packages", [])}
    assert env["serviceOptions"] == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    docker_envs = [
        beam_runner_api_pb2.DockerPayload.FromString(e.payload).container_image
        for e in out["proto"].components.environments.values()
        if e.urn == common_urns.environments.DOCKER.urn
    ]
    assert docker_envs and set(docker_envs) == {image}


def test_clapcorpus_run_writes_a_template_and_reports_that_nothing_ran(tmp_path, capsys):
    """`clapcorpus run ... --template_location` builds the job and submits nothing: there is no summary
    to read, and the command says so instead of failing."""
    from clap_corpus.pipeline.cli.main import main
    from clap_corpus.pipeline.demo.corpus import write_demo_corpus

    spec = write_demo_corpus(str(tmp_path / "src"), n_clips=2, seed=0, k2c_model=None)
    (tmp_path / "staging").mkdir()
    (tmp_path / "temp").mkdir()
    template = tmp_path / "template.json"
    args = [
        "run", "--spec", spec, "--output", "gs://my-bucket/out", *README_ARGS,
        f"--staging_location={tmp_path / 'staging'}", f"--temp_location={tmp_path / 'temp'}",
        f"--template_location={template}", "--dataflow_endpoint=http://localhost:1", "--no_auth",
    ]  # fmt: skip
    assert main(args) == 0
    assert f"Dataflow template written to {template}; nothing ran" in capsys.readouterr().out
    assert json.loads(template.read_text())["environment"]["workerPools"]


def test_readme_flags_are_all_understood():
    """A typo in a documented flag would be dropped silently by Beam's parser: not here."""
    documented = [
        t for b in fenced_blocks(docs_page("dataflow.md"), "bash") for t in shlex.split(b, comments=True)
    ]
    assert [arg for arg in [*README_ARGS, *GPU_ARGS] if arg not in documented] == []
    opts = PipelineOptions([*README_ARGS, *GPU_ARGS, "--temp_location=gs://b/tmp", "--setup_file=./setup.py"])
    known = opts.get_all_options(retain_unknown_options=True)
    for arg in [*README_ARGS, *GPU_ARGS]:
        name = arg[2:].split("=", 1)[0]
        assert name in known and known[name] is not None, name
    assert opts.view_as(GoogleCloudOptions).dataflow_service_options == [GPU_ARGS[1].split("=", 1)[1]]
    assert opts.view_as(WorkerOptions).sdk_container_image == GPU_ARGS[2].split("=", 1)[1]


def _from_lines(path: Path) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", path.read_text(), flags=re.M)


def test_dockerfiles_match_the_installed_beam_and_python():
    """The worker image must run the same Beam and Python as the launcher that pickled the graph."""
    expected = f"apache/beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk:{beam.__version__}"
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (REPO / name).read_text()
        assert expected in _from_lines(REPO / name), (name, _from_lines(REPO / name))
        # the project itself, with or without extras: `pip install .`, `pip install ".[k2c]"`
        assert re.search(r'pip install[^\n]*\s"?\.(\[[^\]]*\])?"?(\s|;|$)', text, flags=re.M), name
        for src in re.findall(r"^COPY\s+(?!--)(.+)\s+\S+$", text, flags=re.M):
            for item in src.split():
                assert (REPO / item).exists(), f"{name}: COPY {item} does not exist"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored or ".venv/" in ignored

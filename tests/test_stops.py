"""Runs that must stop: audio that is not there, unknown options, sources that end empty."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers.audio import tone_bytes

from clap_corpus.manifests.registry import read_source
from clap_corpus.pipeline.cli.main import main
from clap_corpus.pipeline.launch.preflight import SCAN_FACTOR, StartCheckError, check_spec, sample_positions
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.beam_options import UnknownOptionError, unknown_options
from clap_corpus.pipeline.spec.corpus import load_spec

RUNNER = "--runner=FnApiRunner"
YTIDS = ("aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc")


def _generic(tmp_path, name: str, files: list[str], present: int, *, junk: bool = False) -> str:
    """A generic manifest naming ``files`` under audio/<name>/, of which the first ``present`` exist."""
    folder = tmp_path / "audio" / name
    folder.mkdir(parents=True)
    for f in files[:present]:
        (folder / f).write_bytes(
            b"this is not audio at all" * 10 if junk else tone_bytes(440.0, 0.5, fmt="wav")
        )
    rows = [json.dumps({"audio": f, "captions": [f"clip {f}"]}) for f in files]
    (tmp_path / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    return f"{name}.jsonl"


def _audioset(tmp_path) -> dict:
    """An AudioSet source whose files are found by listing its audio root (missing_audio rejects)."""
    (tmp_path / "audio" / "as").mkdir(parents=True)
    for y in YTIDS:
        (tmp_path / "audio" / "as" / f"Y{y}.wav").write_bytes(tone_bytes(440.0, 0.5, fmt="wav"))
    (tmp_path / "classes.csv").write_text('index,mid,display_name\n0,/m/a,"Dog"\n')
    rows = "".join(f'{y}, 0.000, 1.000, "/m/a"\n' for y in YTIDS)
    (tmp_path / "balanced_train_segments.csv").write_text(
        "# c\n# n\n# YTID, start_seconds, end_seconds, positive_labels\n" + rows
    )
    return {
        "name": "as",
        "adapter": "audioset",
        "manifest": "balanced_train_segments.csv",
        "audio_root": "audio/as",
        "options": {"class_index": "classes.csv"},
    }


def _write_spec(tmp_path, sources: list[dict], **options) -> str:
    doc = {"corpus": "c", "options": {"shard_size": 4, **options}, "sources": sources}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    return str(tmp_path / "spec.yaml")


def test_wrong_audio_root_stops_run_and_plan_naming_every_source(tmp_path, capsys):
    files = [f"{i}.wav" for i in range(4)]
    sources = [
        {"name": "good", "adapter": "generic", "manifest": _generic(tmp_path, "good", files, 4)},
        {"name": "typo", "adapter": "generic", "manifest": _generic(tmp_path, "typo", files, 4)},
        _audioset(tmp_path),
        {"name": "gone", "adapter": "generic", "manifest": "nowhere.jsonl", "audio_root": "audio"},
    ]
    sources[0]["audio_root"] = "audio/good"
    sources[1]["audio_root"] = "audio/typ0"  # the wrong root: every file is missing
    sources[2]["audio_root"] = "audio/a5"  # listed by the adapter: every row is rejected missing_audio
    spec = _write_spec(tmp_path, sources)
    out = tmp_path / "out"
    assert main(["run", "--spec", spec, "--output", str(out), RUNNER]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith(spec)]
    assert len(lines) == 3, err
    assert "sources[3].manifest: file not found: " in lines[0] + lines[1] + lines[2]
    typo = next(x for x in lines if "source 'typo'" in x)
    assert "audio found for 0 of 4 sampled rows" in typo
    assert f"missing {tmp_path / 'audio' / 'typ0' / '0.wav'}" in typo
    a_s = next(x for x in lines if "source 'as'" in x)
    assert "audio found for 0 of 3" in a_s and "missing_audio 3" in a_s
    assert "no audio file for id 'aaaaaaaaaaa'" in a_s
    assert not out.exists()  # stopped before anything was written

    assert main(["plan", "--spec", spec]) == 2
    assert [x for x in capsys.readouterr().err.splitlines() if x.startswith(spec)] == lines


def test_wrong_root_alone_fails_the_run(tmp_path, capsys):
    files = [f"{i}.wav" for i in range(3)]
    spec = _write_spec(
        tmp_path,
        [
            {
                "name": "s",
                "adapter": "generic",
                "manifest": _generic(tmp_path, "s", files, 3),
                "audio_root": ".",
            }
        ],
    )
    assert main(["run", "--spec", spec, "--output", str(tmp_path / "out"), RUNNER]) == 2
    assert "source 's' (audio_root " in capsys.readouterr().err


def test_mostly_missing_audio_and_the_threshold(tmp_path):
    files = [f"{i}.wav" for i in range(10)]
    source = {"name": "s", "adapter": "generic", "manifest": _generic(tmp_path, "s", files, 3)}
    source["audio_root"] = "audio/s"
    with pytest.raises(StartCheckError, match=r"audio found for 3 of 10 sampled rows \(30%, min_audio_found"):
        check_spec(load_spec(_write_spec(tmp_path, [source])))
    results = check_spec(load_spec(_write_spec(tmp_path, [{**source, "min_audio_found": 0.3}])))
    assert (results["s"].found, results["s"].sampled, results["s"].rows_read) == (3, 10, 10)
    check_spec(load_spec(_write_spec(tmp_path, [source], min_audio_found=0.25)))  # the corpus default
    # a sample of at most 2 rows: the first (found), then only hash-chosen ones
    small = check_spec(load_spec(_write_spec(tmp_path, [source], start_check_rows=2)))["s"]
    assert 1 <= small.sampled <= 2 and small.found >= 1 and small.rows_read == 10
    assert check_spec(load_spec(_write_spec(tmp_path, [source], start_check_rows=0))) == {}


def test_sample_is_deterministic_and_stops_reading_early():
    pulled = []

    def rows():
        for i in range(10_000_000):
            pulled.append(i)
            yield i

    first = list(sample_positions(rows(), 200, salt="start-check"))
    assert len(pulled) <= 200 * SCAN_FACTOR and len(first) == 200
    assert first[:100] == list(range(100)) and first[-1] > 10_000  # beyond the head, spread out
    assert first == list(sample_positions(iter(range(10_000_000)), 200, salt="start-check"))


def test_zero_samples_fail_the_run_unless_allowed(tmp_path, capsys):
    files = ["a.wav", "b.wav"]
    good = {"name": "good", "adapter": "generic", "manifest": _generic(tmp_path, "good", files, 2)}
    junk = {"name": "junk", "adapter": "generic", "manifest": _generic(tmp_path, "junk", files, 2, junk=True)}
    good["audio_root"], junk["audio_root"] = "audio/good", "audio/junk"
    spec = _write_spec(tmp_path, [good, junk])  # junk's files exist: the start check passes
    assert main(["run", "--spec", spec, "--output", str(tmp_path / "out"), RUNNER]) == 1
    out = capsys.readouterr().out
    assert "EMPTY: source 'junk' produced no samples" in out and "source 'good'" not in out
    # the summary file says it too (a Dataflow launcher that did not wait reads only that)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["empty_sources"] == ["junk"]
    spec = _write_spec(tmp_path, [good, {**junk, "allow_empty": True}])
    summary = run_corpus(spec, str(tmp_path / "out"), [RUNNER])
    assert summary["empty_sources"] == [] and summary["sources"]["junk"]["samples"] == 0
    assert summary["sources"]["good"]["samples"] == 2


def test_unknown_option_fails_at_start_with_the_closest_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--output", str(tmp_path / "d"), "--num-clips", "5"])
    assert e.value.code == 2
    assert "unknown option --num-clips (did you mean --clips?)" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    with pytest.raises(SystemExit):
        main(["run", "--spec", "s.yaml", "--output", "o", "--temp-location=gs://b/t"])
    assert "(did you mean --temp_location?)" in capsys.readouterr().err
    with pytest.raises(UnknownOptionError, match=r"unknown option --runer \(did you mean --runner\?\)"):
        run_corpus("never-read.yaml", str(tmp_path / "o"), ["--runer=FnApiRunner"])


@pytest.mark.parametrize(
    "args",
    [
        "--runner=DataflowRunner --project=x --region=y --temp_location=gs://b/tmp "
        "--sdk_container_image=eu.gcr.io/p/img:1 --experiments=use_runner_v2 "
        "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
        "--runner DataflowRunner --project x --region y --temp_location gs://b/tmp --staging_location "
        "gs://b/st --machine_type n2-standard-8 --max_num_workers 50 --experiments a --experiments b "
        "--setup_file ./setup.py --template_location t.json --dry_run true",
        "--direct_num_workers 2 --direct_running_mode=multi_processing --save_main_session",
    ],
)
def test_beam_options_pass_in_both_forms(args):
    assert unknown_options(args.split()) == []


def test_beam_option_with_a_space_runs(tmp_path):
    files = ["a.wav"]
    source = {"name": "s", "adapter": "generic", "manifest": _generic(tmp_path, "s", files, 1)}
    spec = _write_spec(tmp_path, [{**source, "audio_root": "audio/s"}])
    out = tmp_path / "out"
    args = [
        "run",
        "--spec",
        spec,
        "--output",
        str(out),
        "--runner",
        "FnApiRunner",
        "--direct_num_workers",
        "1",
    ]
    assert main(args) == 0
    assert json.loads((out / "summary.json").read_text())["samples"] == 1


def test_adapters_stop_early_for_the_sample(tmp_path):
    """The sample reads a prefix of a streaming manifest, not all of it."""
    n = 3 * SCAN_FACTOR
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"audio": f"{i}.wav"}) + "\n" for i in range(n)))
    source = {
        "name": "s",
        "adapter": "generic",
        "manifest": "m.jsonl",
        "audio_root": ".",
        "min_audio_found": 0,
    }
    spec = load_spec(_write_spec(tmp_path, [source], start_check_rows=2))
    result = check_spec(spec)["s"]
    assert result.sampled >= 1 and result.rows_read <= 2 * SCAN_FACTOR < n
    assert sum(1 for _ in read_source(spec.sources[0])) == n

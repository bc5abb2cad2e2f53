"""Values that cannot work are refused at load; every other value works end to end (issue 25).

Every number of the spec's models (pipeline/spec/corpus.py down to SampleOptions, K2C, fetch, CLAP) and of the
trainer's configs (trainer/config.py, what `clapcorpus train` builds) is found by walking the models,
so a new option is swept without anyone listing it. Each gets 0, -1, 10^9 (and for floats inf and
nan), and each pair of options that bounds one thing from both sides (``min_x``/``max_x``, ``x``/
``max_x``, ``min_x``/``x``, read from the field names) gets its two sides swapped. A value must be refused
at load with one line that names the option, or work end to end: sample options through the per-sample
chain on real files, fetch options through the fetch engine against a real server, the rest in real
runs (FnApiRunner, the demo corpus, K2C's and a CLAP model, a URL source) that must end without an
``internal_error``, and the trainer's in a real training run. Before issue 25 ``max_duration_s: 0``
loaded and turned every sample of a run into an ``internal_error``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from fetch_server import FetchServer
from pydantic.dataclasses import is_pydantic_dataclass

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record
from clap_corpus.core.rejects import RejectError
from clap_corpus.k2c.config import GenerationOptions, K2CConfig
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import (
    CorpusOptions,
    CorpusSpec,
    SourceCheck,
    SpecError,
    _where,
    parse_spec,
)
from clap_corpus.scoring.config import ClapConfig
from clap_corpus.transforms.fetch.batch import FetchItem, ShardFetcher
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions, FreesoundOptions, YouTubeOptions
from clap_corpus.transforms.fetch.http import FetchPolicy
from clap_corpus.transforms.sample import SampleOptions, process_sample

INT_PROBES = {"zero": 0, "negative": -1, "huge": 10**9}
FLOAT_PROBES = {**INT_PROBES, "zero": 0.0, "negative": -1.0, "huge": 1e9, "inf": math.inf, "nan": math.nan}
RUNNER = ["--runner=FnApiRunner"]


@dataclasses.dataclass(frozen=True)
class Option:
    path: str  # as a spec writes it: options.k2c.generation.num_beams, sources[0].expected_count
    model: type
    name: str
    kind: str  # int | float | shares (split proportions: {split: share})


def _unwrap(annotation: Any) -> list[Any]:
    """The types an annotation admits (Optional, unions and Annotated taken apart)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _unwrap(a)]
    return [annotation]


def _model_positions(annotation: Any) -> tuple[type, tuple[int, ...]] | None:
    """The model inside ``annotation`` and the tuple positions down to it (sources: (0,))."""
    for t in _unwrap(annotation):
        if is_pydantic_dataclass(t):
            return t, ()
        if typing.get_origin(t) is tuple:
            args = typing.get_args(t)
            items = [(0, args[0])] if len(args) == 2 and args[1] is Ellipsis else list(enumerate(args))
            for i, arg in items:
                found = _model_positions(arg)
                if found is not None:
                    return found[0], (i, *found[1])
    return None


def _number_kind(annotation: Any) -> str | None:
    kinds = _unwrap(annotation)
    if float in kinds:
        return "float"
    if int in kinds:
        return "int"
    if any(typing.get_origin(t) is tuple and "float" in repr(t) for t in kinds):
        return "shares"
    return None


def spec_options() -> list[Option]:
    out: list[Option] = []

    def walk(cls: type, loc: tuple) -> None:
        for name, info in cls.__pydantic_fields__.items():
            found = _model_positions(info.annotation)
            if found is not None:
                walk(found[0], (*loc, name, *found[1]))
                continue
            kind = _number_kind(info.annotation)
            path = _where((*loc, name))
            if kind and path:
                out.append(Option(path, cls, name, kind))

    walk(CorpusSpec, ())
    return out


def bound_pairs(names: list[str]) -> list[tuple[str, str]]:
    """(low, high) pairs of one model's fields, read from their names."""
    pairs = set()
    for name in names:
        if name.startswith("max_"):
            rest = name[4:]
            low = f"min_{rest}" if f"min_{rest}" in names else rest if rest in names else None
            if low:
                pairs.add((low, name))
        if name.startswith("min_"):
            rest = name[4:]
            high = f"max_{rest}" if f"max_{rest}" in names else rest if rest in names else None
            if high:
                pairs.add((name, high))
    return sorted(pairs)


def _set(doc: dict, path: str, value: Any) -> None:
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    node = doc
    for part in parts[:-1]:
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})
    node[parts[-1]] = {"train": value} if isinstance(value, _Shares) else value


class _Shares(float):
    """A probe written as split shares: ``{train: value}``."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A demo corpus whose spec names K2C's tiny model and a tiny CLAP model, plus a URL source."""
    from clap_models import tiny_clap_model

    root = tmp_path_factory.mktemp("sweep")
    spec_path = write_demo_corpus(str(root / "src"), n_clips=6, max_seconds=14.0, k2c_model="tiny")
    doc = yaml.safe_load(Path(spec_path).read_text())
    # an untrained CLAP model finds every clip close to every other: its guard only reports here
    doc["options"]["clap"] = {"model": tiny_clap_model(str(root / "clap")), "content_overlap": "report"}
    # the URL source's server is on loopback, which a fetch refuses unless the spec allows it
    doc["options"]["fetch"] = {"allow_private_networks": True}
    return {"root": root, "doc": doc, "file": spec_path}


def _load(world: dict, doc: dict) -> CorpusSpec:
    return parse_spec(doc, world["file"])


def _refusal(world: dict, doc: dict) -> str | None:
    try:
        _load(world, doc)
    except SpecError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def spec_sweep(world) -> dict:
    accepted: dict[str, list[tuple[Option, Any]]] = {}
    refused: list[tuple[str, str]] = []
    for option in spec_options():
        probes = INT_PROBES if option.kind == "int" else FLOAT_PROBES
        for probe, value in probes.items():
            doc = copy.deepcopy(world["doc"])
            _set(doc, option.path, _Shares(value) if option.kind == "shares" else value)
            message = _refusal(world, doc)
            if message is None:
                accepted.setdefault(probe, []).append((option, value))
            else:
                refused.append((option.path, message))
    return {"accepted": accepted, "refused": refused, "options": spec_options()}


def test_the_sweep_reaches_every_part_of_the_spec(spec_sweep):
    models = {o.model for o in spec_sweep["options"]}
    for model in (SampleOptions, CorpusOptions, SourceSpec, SourceCheck, K2CConfig, GenerationOptions):
        assert model in models, model
    assert {FetchOptions, YouTubeOptions, FreesoundOptions, ClapConfig} <= models
    assert len(spec_sweep["options"]) >= 50


def test_a_refused_value_is_one_line_naming_the_option(spec_sweep, world):
    assert spec_sweep["refused"]
    for path, message in spec_sweep["refused"]:
        lines = message.splitlines()
        assert len(lines) == 1, message
        assert lines[0].startswith(f"{world['file']}: {path}: "), (path, message)


def test_the_values_the_issue_found_are_refused(world):
    for path, value in [
        ("options.max_duration_s", 0),
        ("options.max_file_bytes", 0),
        ("options.max_channels", 0),
        ("options.fetch.connect_timeout_s", 0),
        ("options.max_duration_s", math.inf),
        ("options.split_proportions", _Shares(math.nan)),
        ("sources[0].expected_count", -1),
    ]:
        doc = copy.deepcopy(world["doc"])
        _set(doc, path, value)
        assert _refusal(world, doc) is not None, (path, value)


def test_nothing_huge_infinite_or_undefined_loads(spec_sweep):
    for probe in ("huge", "inf", "nan"):
        loaded = [o.path for o, _ in spec_sweep["accepted"].get(probe, [])]
        # a size or a rate may be as large as one likes (up to 2^40 bytes): a gigabyte is a size; and a
        # source may hold a billion rows
        sizes = {"options.max_file_bytes", "options.fetch.youtube.rate_limit", "sources[0].expected_count"}
        assert set(loaded) <= {"options.fetch.requests_per_second_per_host", *sizes}, (probe, loaded)


def test_both_sides_of_a_bound_must_agree(world):
    by_model: dict[type, list[Option]] = {}
    for option in spec_options():
        by_model.setdefault(option.model, []).append(option)
    checked = 0
    for options in by_model.values():
        paths = {o.name: o for o in options}
        for low, high in bound_pairs(list(paths)):
            default = getattr(paths[high].model(**_required(paths[high].model)), high)
            top = 1 if default is None else default
            doc = copy.deepcopy(world["doc"])
            _set(doc, paths[high].path, top)
            _set(doc, paths[low].path, top * 2 + (1 if paths[low].kind == "int" else 0))
            message = _refusal(world, doc)
            assert message is not None and len(message.splitlines()) == 1, (low, high, message)
            assert paths[high].path in message or paths[low].path in message, message
            checked += 1
    # min/max duration, K2C's and CLAP's batch sizes, fetch backoff, YouTube's sleep
    assert checked >= 5
    doc = copy.deepcopy(world["doc"])
    _set(doc, "options.k2c.max_caption_chars", 2000)  # above the corpus's own cap (1000)
    assert "options.k2c.max_caption_chars" in (_refusal(world, doc) or "")


def _required(model: type) -> dict:
    return {"model": "tiny"} if model is K2CConfig else {"model": "a/b"} if model is ClapConfig else {}


# --- the accepted values, end to end --------------------------------------------------------------


def _real_clips() -> list[bytes]:
    tone = synth.tone(440.0, 1.5, 44_100)
    return [
        synth.encode_audio(synth.to_channels(tone, 2), 44_100, "mp3"),
        synth.encode_audio(tone * 0.01, 44_100, "flac"),  # -40 dBFS
        synth.encode_audio(synth.tone(220.0, 12.0, 48_000), 48_000, "ogg"),
    ]


def test_accepted_sample_options_work_on_real_files(spec_sweep, world):
    clips = _real_clips()
    record = Record(key="k", source="s", source_id="k", audio=LocalFile("/k"), row=1, text=("a tone",))
    tried = 0
    for probe, accepted in spec_sweep["accepted"].items():
        for option, value in accepted:
            if option.model is not SampleOptions:
                continue
            doc = copy.deepcopy(world["doc"])
            _set(doc, option.path, value)
            options = _load(world, doc).options.sample
            for data in clips:
                try:
                    process_sample(record, data, options)
                except RejectError as e:  # a reject with its reason is working; anything else is not
                    assert e.code != "internal_error", (option.path, probe)
            tried += 1
    assert tried >= 5


def test_accepted_fetch_options_fetch(spec_sweep, world, tmp_path):
    import importlib.util

    wav = synth.encode_audio(synth.tone(330.0, 1.0, 16_000), 16_000, "wav")
    files = {"x.wav": wav, "101.ogg": synth.encode_audio(synth.tone(200.0, 0.5, 44_100), 44_100, "ogg")}
    env = {"FREESOUND_TOKEN": "secret-token"}
    tried = 0
    with FetchServer(files) as server:
        for probe, accepted in spec_sweep["accepted"].items():
            for option, value in accepted:
                if option.model not in (FetchOptions, YouTubeOptions, FreesoundOptions):
                    continue
                doc = copy.deepcopy(world["doc"])
                _set(doc, option.path, value)
                fetch = _load(world, doc).options.fetch
                freesound = dataclasses.replace(fetch.freesound, api_host="127.0.0.1")
                checks = [
                    (fetch, server.url("/audio/x.wav")),
                    (fetch, server.url(f"/500-until/1/x.wav?{option.path}={probe}")),  # a retry, if allowed
                    (fetch, server.url("/to-host/127.0.0.1/audio/x.wav")),  # a redirect
                    (
                        dataclasses.replace(fetch, freesound=freesound),
                        server.url("/freesound/apiv2/sounds/101/"),
                    ),
                ]
                if importlib.util.find_spec("yt_dlp"):
                    youtube = dataclasses.replace(fetch.youtube, hosts=("127.0.0.1",))
                    checks.append(
                        (dataclasses.replace(fetch, youtube=youtube), server.url("/audio/x.wav?end=0.5"))
                    )
                for i, (options, url) in enumerate(checks):
                    cache = ContentCache(str(tmp_path / f"{option.name}-{probe}-{i}"))
                    fetcher = ShardFetcher(options, cache, {"s": FetchPolicy(options)}, environ=env)
                    (outcome,) = fetcher.run([FetchItem("s", 1, "k", url)], {})
                    status = outcome.status
                    expected_ok = "500-until" not in url or options.retries > 0
                    expected_ok = expected_ok and ("to-host" not in url or options.max_redirects > 0)
                    assert (status.status == "ok") == expected_ok, (option.path, probe, url, status)
                tried += 1
    assert tried >= 5


def _run_with(world: dict, values: list[tuple[Option, Any]], name: str) -> dict:
    doc = copy.deepcopy(world["doc"])
    for option, value in values:
        _set(doc, option.path, _Shares(value) if option.kind == "shares" else value)
    path = Path(world["root"]) / "src" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return run_corpus(str(path), str(Path(world["root"]) / f"out-{name}"), RUNNER)


ELSEWHERE = (SampleOptions, FetchOptions, YouTubeOptions, FreesoundOptions)


@pytest.fixture(scope="module")
def runs(spec_sweep, world) -> dict[str, tuple[list[str], dict]]:
    out = {}
    for probe, accepted in sorted(spec_sweep["accepted"].items()):
        # sample options run through process_sample above; the file size cap is a reader's
        values = [
            (o, v) for o, v in accepted if o.model not in ELSEWHERE or o.path == "options.max_file_bytes"
        ]
        if values:
            out[probe] = ([o.path for o, _ in values], _run_with(world, values, probe))
    return out


@pytest.mark.slow
def test_accepted_corpus_k2c_and_clap_options_build_a_corpus(runs):
    paths = {p for names, _ in runs.values() for p in names}
    # what a run with these values proves: the corpus-wide options, a source's, K2C's and CLAP's
    for part in ("options.start_check_rows", "options.k2c.", "options.clap.", "sources[0]."):
        assert any(p.startswith(part) for p in paths), part
    for probe, (names, summary) in runs.items():
        # every input a sample or a reject with its reason (CLAP thresholds of 0 or -1 reject pairs, and
        # remove train audio "close" to held-out audio: that is what they say)
        assert summary["accounting_ok"] and summary["samples"] > 0, (probe, summary["rejects_by_code"])
        assert "internal_error" not in summary["rejects_by_code"], (probe, names)
        assert "k2c" in summary["stages"], probe


# --- the trainer -----------------------------------------------------------------------------------


def _train_fields() -> list[tuple[str, type, str, str]]:
    """(config path, config class, field, kind) for every number of the trainer's configs."""
    from clap_corpus.trainer.config import AudioConfig, ModelConfig, TextConfig, TrainConfig

    out = []
    for cls, prefix in ((TrainConfig, ""), (ModelConfig, ""), (AudioConfig, "audio."), (TextConfig, "text.")):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = _unwrap(hints[f.name])
            kind = "float" if float in kinds else "int" if int in kinds else None
            if any(typing.get_origin(t) is tuple for t in kinds):
                kind = "pair"  # betas
            if kind:
                out.append((prefix + f.name, cls, f.name, kind))
    return out


def _train_configs(path: str, value: Any) -> Any:
    """The trainer's configs with ``path`` set to ``value``: through the command line where an option
    sets it (``--lr``), else as a checkpoint's JSON holds it."""
    from clap_corpus.pipeline.cli.main import _subparser, build_parser
    from clap_corpus.trainer.cli import FIELDS, configs_from_args
    from clap_corpus.trainer.config import ModelConfig, TrainConfig

    parser = build_parser()
    option = {f: o for o, f in FIELDS.items()}.get(path, path)
    action = next((a for a in _subparser(parser, "train")._actions if a.dest == option), None)
    if action is not None and action.option_strings:
        args, _ = parser.parse_known_args(["train", "--data", "d", f"{action.option_strings[0]}={value}"])
        return configs_from_args(args)
    model = ModelConfig().to_json()
    if "." in path:
        part, name = path.split(".")
        return ModelConfig.from_json({**model, part: {**model[part], name: value}})
    if path in model:
        return ModelConfig.from_json({**model, path: value})
    return TrainConfig.from_json({**TrainConfig().to_json(), path: value})


@pytest.fixture(scope="module")
def train_sweep() -> dict:
    from clap_corpus.trainer.cli import option_name
    from clap_corpus.trainer.config import OptionError

    accepted, refused = [], []
    for path, _, _, kind in _train_fields():
        probes = INT_PROBES if kind == "int" else FLOAT_PROBES
        for probe, value in probes.items():
            written = [value, value] if kind == "pair" else value
            try:
                _train_configs(path, written)
            except OptionError as e:
                refused.append((path, option_name(e.field), e.message))
            else:
                accepted.append((path, probe, written))
    return {"accepted": accepted, "refused": refused}


def test_every_number_of_the_trainer_is_swept(train_sweep):
    paths = {p for p, *_ in _train_fields()}
    assert {
        "lr",
        "batch_size",
        "shuffle_buffer",
        "joint_dim",
        "text.max_length",
        "audio.dropout",
        "betas",
    } <= paths
    swept = {p for p, *_ in train_sweep["refused"]} | {p for p, *_ in train_sweep["accepted"]}
    assert swept == paths


def test_the_trainer_refuses_with_one_line_naming_the_option(train_sweep):
    from clap_corpus.trainer.cli import option_name

    for path, name, message in train_sweep["refused"]:
        assert "\n" not in message and name == option_name(path), (path, name, message)
    accepted = {(p, probe) for p, probe, _ in train_sweep["accepted"]}
    for probe in ("huge", "inf", "nan", "negative"):
        # a seed of 10^9 is a seed (numpy and torch take up to 2^32 - 1)
        assert {p for p, q in accepted if q == probe} <= ({"seed"} if probe == "huge" else set()), probe


def test_train_stops_at_once_on_a_value_that_cannot_work(tmp_path, capsys):
    from clap_corpus.pipeline.cli.main import main

    for args, line in [
        (["--log-every", "0"], "clapcorpus train: --log-every: must be in [1, 1000000], got 0"),
        (["--lr", "1e-3", "--min-lr", "1e-2"], "clapcorpus train: --min-lr: must be in [0, 0.001], got 0.01"),
        (["--shuffle-buffer", "-5"], "clapcorpus train: --shuffle-buffer: must be in [1, 1000000], got -5"),
        (["--stop-at-step", "0"], "clapcorpus train: --stop-at-step: must be in [1, 1000000], got 0"),
    ]:
        assert main(["train", "--data", str(tmp_path / "none"), "--output", str(tmp_path / "o"), *args]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [line]


def test_the_trainers_relations_are_checked():
    from clap_corpus.trainer.config import AudioConfig, ModelConfig, OptionError, TextConfig, TrainConfig

    # the pairs the field names make (min_lr and lr), then those no name says
    for cls in (TrainConfig, ModelConfig, AudioConfig, TextConfig):
        defaults = cls()
        for low, high in bound_pairs([f.name for f in dataclasses.fields(cls)]):
            top = getattr(defaults, high)
            with pytest.raises(OptionError):
                cls(**{high: top, low: top * 2})
    for build in (
        lambda: TrainConfig(lr=1e-3, min_lr=1e-2),
        lambda: ModelConfig(init_temperature=0.001, max_logit_scale=100.0),
        lambda: TextConfig(tiny_hidden=30, tiny_heads=4),
        lambda: AudioConfig(spec_size=256, patch_size=3),
    ):
        with pytest.raises(OptionError):
            build()


def test_the_command_lines_defaults_are_the_configs():
    # one place for each default (issue 25: --shuffle-buffer said 500 where TrainConfig said 1000)
    from clap_corpus.pipeline.cli.main import build_parser
    from clap_corpus.trainer.cli import configs_from_args
    from clap_corpus.trainer.config import ModelConfig, TrainConfig

    args, _ = build_parser().parse_known_args(["train", "--data", "d"])
    tcfg, mcfg = configs_from_args(args)
    assert tcfg == TrainConfig(data="d")
    assert mcfg == ModelConfig()


@pytest.mark.slow
@pytest.mark.parametrize("probe", ["zero", "huge"])
def test_accepted_trainer_values_train(probe, train_sweep, runs, tmp_path):
    """Every accepted probe of a kind at once, in a real (tiny) training run on a corpus built above."""
    from clap_corpus.trainer.cli import FIELDS
    from clap_corpus.trainer.config import AudioConfig, ModelConfig, TextConfig, TrainConfig
    from clap_corpus.trainer.train import train

    summary = max((s for _, s in runs.values()), key=lambda s: s["splits"].get("train", {}).get("samples", 0))
    train_kw: dict = {"data": summary["output"], "output": str(tmp_path / "run"), "max_steps": 2,
                      "batch_size": 2, "eval_split": None, "shuffle_buffer": 8}  # fmt: skip
    audio_kw: dict = {"encoder": "cnn", "size": "micro"}
    text_kw: dict = {"model": "tiny", "tiny_hidden": 32, "tiny_layers": 1}
    model_kw: dict = {"joint_dim": 32}
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    seen = []
    for path, kind, value in train_sweep["accepted"]:
        if kind != probe:
            continue
        seen.append(path)
        field = FIELDS.get(path, path)
        if field.startswith("audio."):
            audio_kw[field[6:]] = value
        elif field.startswith("text."):
            text_kw[field[5:]] = value
        elif field in names:
            model_kw[field] = value
        else:
            train_kw[field] = tuple(value) if isinstance(value, list) else value
    assert seen and ({"warmup_steps", "workers", "weight_decay", "min_lr"} <= set(seen) or probe != "zero")
    result = train(
        TrainConfig(**train_kw),
        ModelConfig(audio=AudioConfig(**audio_kw), text=TextConfig(**text_kw), **model_kw),
    )
    assert result.state.step == 2 and result.checkpoint and Path(result.checkpoint).exists()

"""The K2C stage of the Beam graph: plan -> distinct keyword sets -> RunInference -> fan out.

    records ─► Plan ─┬─ passthrough (source captions, mode off, no usable keywords) ──────────┐
                     └─ todo (group, (record, keywords)) ─┬──────────────────► Attach ─► records ─► out
                                                          └─ Distinct ─► RunInference ─► Finish ┘(side input)

Each distinct keyword set runs through the model once (with ``dedup: false``, each record does); the
captions reach the records as a side input (a dict keyed by the set), so no record is shuffled and a
popular set ("Music": hundreds of thousands of AudioSet clips) is no hot key. Nothing is dropped: a
record whose caption fails a check keeps its template caption, with the reason counted in the report.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import apache_beam as beam
from apache_beam.metrics.metric import Metrics  # defined there; apache_beam.metrics does not export it
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.pvalue import AsDict, AsList, AsSingleton, TaggedOutput

from clap_corpus.core.records import Record
from clap_corpus.k2c.apply import attach, plan
from clap_corpus.k2c.config import K2CConfig
from clap_corpus.k2c.handler import K2CModelHandler, check_captioner
from clap_corpus.k2c.outcomes import FALLBACKS, INPUT_FALLBACKS, Outcome
from clap_corpus.k2c.postprocess import CaptionResult, finish
from clap_corpus.k2c.presets import PRESETS
from clap_corpus.transforms.stage_output import StageOutput

STAGE = "k2c"
TODO = "todo"
# Tag of the side output that counts outcomes. Its elements are the Outcome values as plain str: Beam
# encodes a str key natively, while an enum member would take its fallback coder (with a warning).
OUTCOMES = "outcomes"


class PlanFn(beam.DoFn):
    def __init__(self, config: K2CConfig):
        self.config = config

    def process(self, record: Record):
        p = plan(record, self.config)
        if p.keywords is not None and p.keywords.truncated:
            yield TaggedOutput(OUTCOMES, Outcome.TRUNCATED_KEYWORD_LIST.value)
        if p.keywords is not None and p.keywords.dropped_non_latin:
            yield TaggedOutput(OUTCOMES, Outcome.DROPPED_NON_LATIN_KEYWORDS.value)
        if p.outcome is Outcome.TODO:
            assert p.keywords is not None
            yield TaggedOutput(TODO, (p.group, (record, p.keywords.keywords)))
            return
        yield TaggedOutput(OUTCOMES, p.outcome.value)
        yield record


def model_input(element: tuple[str, tuple[str, ...]], preset: str) -> tuple[tuple[str, tuple[str, ...]], str]:
    """(group, keywords) -> ((group, keywords), model input text): the key travels through the model."""
    return element, PRESETS[preset].format(element[1])


def finish_prediction(
    element: tuple[tuple[str, tuple[str, ...]], PredictionResult], config: K2CConfig
) -> tuple[str, CaptionResult]:
    (group, keywords), prediction = element
    # K2CHandler's caption text (Beam types the field with a TypeVar of no class)
    raw = cast(str | None, prediction.inference)
    result = finish(raw, keywords, max_chars=config.max_caption_chars, use_debias=config.debias)
    return group, result


class AttachFn(beam.DoFn):
    def __init__(self, config: K2CConfig):
        self.config = config
        self.generated = Metrics.counter(STAGE, "generated")
        self.fallbacks = Metrics.counter(STAGE, "fallbacks")

    def process(
        self, element: tuple[str, tuple[Record, tuple[str, ...]]], captions: dict[str, CaptionResult]
    ):
        group, (record, _) = element
        out, outcome = apply_result(record, captions.get(group), self.config)
        (self.generated if outcome is Outcome.GENERATED else self.fallbacks).inc()
        yield TaggedOutput(OUTCOMES, outcome.value)
        yield out


def apply_result(record: Record, result: CaptionResult | None, config: K2CConfig) -> tuple[Record, Outcome]:
    """(the record as it leaves the stage, GENERATED or the fallback that kept its template caption).

    ``result`` is None when the model produced nothing for the record's keyword set."""
    result = result or CaptionResult(None, Outcome.GENERATION_ERROR)
    if result.caption is None:
        assert result.reason is not None
        return record, result.reason
    out = attach(record, result.caption, config.mode_for(record.source), config.min_clip_seconds)
    return (record, Outcome.SAME_AS_TEMPLATE) if out is None else (out, Outcome.GENERATED)


def build_report(
    _: None, config: K2CConfig, outcomes: list[tuple[str, int]], distinct_sets: int
) -> tuple[str, dict[str, Any]]:
    counts = Counter({Outcome(k): n for k, n in outcomes})
    fallbacks = {o.value: counts[o] for o in sorted(FALLBACKS) if counts[o]}
    generated = counts[Outcome.GENERATED]
    input_fallbacks = sum(counts[o] for o in INPUT_FALLBACKS)
    eligible = generated + sum(fallbacks.values())
    through_model = eligible - input_fallbacks
    return STAGE, {
        "model": config.model,
        "preset": config.preset,
        "device": config.device,
        "dedup": config.dedup,
        "debias": config.debias,
        "modes": {"default": config.mode, **dict(config.sources)},
        "min_clip_seconds": config.min_clip_seconds,
        "records": eligible + counts[Outcome.NOT_TEMPLATE] + counts[Outcome.MODE_OFF],
        "not_template": counts[Outcome.NOT_TEMPLATE],
        "mode_off": counts[Outcome.MODE_OFF],
        "eligible": eligible,
        "through_model": through_model,
        "model_inputs": distinct_sets,
        "dedup_ratio": round(through_model / distinct_sets, 4) if distinct_sets else None,
        "generated": generated,
        "fallbacks": fallbacks,
        "truncated_keyword_lists": counts[Outcome.TRUNCATED_KEYWORD_LIST],
        "records_with_non_latin_keywords_dropped": counts[Outcome.DROPPED_NON_LATIN_KEYWORDS],
        "note": (
            "generated counts records given a K2C caption here; clips under min_clip_seconds lose it when "
            "decoded (summary: k2c_skipped_short), and summary k2c_captions counts the samples that ship one"
        ),
    }


class K2CStage(beam.PTransform):
    """Records in; a :class:`StageOutput` out, its report one ``("k2c", {...})`` element. No rejects:
    a record whose caption fails a check keeps its template caption."""

    def __init__(self, config: K2CConfig, spec_path: str = ""):
        super().__init__()
        self.config = config
        self.spec_path = spec_path

    def expand(self, records) -> StageOutput:
        cfg = self.config
        # In the launcher, before any worker starts: a model that is not there fails the run here,
        # with a message saying how to provide it. Its weights load on a worker, once a record needs them.
        check_captioner(cfg, self.spec_path)
        planned = records | "Plan" >> beam.ParDo(PlanFn(cfg)).with_outputs(TODO, OUTCOMES, main="passthrough")
        todo = planned[TODO]
        sets = (
            todo | "KeywordSet" >> beam.Map(lambda kv: (kv[0], kv[1][1])) | "DistinctSets" >> beam.Distinct()
        )
        captions = (
            sets
            | "ModelInput" >> beam.Map(model_input, cfg.preset)
            | "RunInference" >> RunInference(KeyedModelHandler(K2CModelHandler(cfg)))
            | "Finish" >> beam.Map(finish_prediction, cfg)
        )
        attached = todo | "Attach" >> beam.ParDo(AttachFn(cfg), AsDict(captions)).with_outputs(
            OUTCOMES, main="records"
        )
        out = (planned.passthrough, attached.records) | "Records" >> beam.Flatten()
        outcomes = (
            (planned[OUTCOMES], attached[OUTCOMES])
            | "Outcomes" >> beam.Flatten()
            | "CountOutcomes" >> beam.combiners.Count.PerElement()
        )
        n_sets = sets | "CountSets" >> beam.combiners.Count.Globally()
        report = (
            records.pipeline
            | "ReportOnce" >> beam.Create([None])
            | "Report" >> beam.Map(build_report, cfg, AsList(outcomes), AsSingleton(n_sets))
        )
        return StageOutput(out, report=report)

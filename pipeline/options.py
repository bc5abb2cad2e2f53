"""Beam pipeline options: pass-through for any runner, with a sensible local default.

Without ``--runner`` we run the FnApiRunner in multi-processing mode on every core. Beam's default
DirectRunner would try Prism first, which downloads a binary at run time and runs Python code as
threads in one process (GIL-bound): useless for decoding audio.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

LOCAL_DEFAULTS = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=0"]


def has_flag(args: list[str], name: str) -> bool:
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in args)


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    args = list(beam_args)
    if not has_flag(args, "runner"):
        args = LOCAL_DEFAULTS + args
    opts = PipelineOptions(args)
    # DoFns reference module-level code of this package; workers import it instead of unpickling
    # the main session.
    opts.view_as(SetupOptions).save_main_session = False
    return opts


def runner_name(opts: PipelineOptions) -> str:
    from apache_beam.options.pipeline_options import StandardOptions

    return str(opts.view_as(StandardOptions).runner or "")

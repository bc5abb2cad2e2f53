"""Building a corpus needs neither PyTorch nor transformers (issue 17): the core install.

Each check runs in a fresh interpreter and reads its ``sys.modules``: an import of torch anywhere on
the pipeline's path (launcher or, with ``--runner=FnApiRunner`` in memory, the DoFns themselves) shows
there. The core install is made real by blocking the heavy modules (``sys.modules[name] = None`` is
what Python does for a module that must not load: ``import`` raises ImportError), so the features that
need an extra are seen to fail with the pip command to run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

HEAVY = ("torch", "torchaudio", "transformers", "sentencepiece", "safetensors", "tensorflow")
BLOCK = "import sys\nfor _m in ('torch', 'transformers'):\n    sys.modules[_m] = None\n"


def _python(code: str, cwd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def _loaded_heavy() -> str:
    return f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"


def test_the_launcher_and_every_command_parser_load_without_torch(tmp_path):
    code = (
        "import json, sys\n"
        "import clap_corpus.pipeline.launch.run\n"
        "from clap_corpus.pipeline.cli.main import build_parser\n"
        "build_parser()\n" + _loaded_heavy()
    )
    proc = _python(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_a_k2c_off_run_never_imports_torch(tmp_path):
    code = (
        "import json, sys\n"
        "from clap_corpus.pipeline.demo.corpus import write_demo_corpus\n"
        "from clap_corpus.pipeline.launch.run import run_corpus\n"
        "spec = write_demo_corpus('src', n_clips=5, max_seconds=14.0, k2c_model=None)\n"
        "s = run_corpus(spec, 'out', ['--runner=FnApiRunner'])\n"
        "print(json.dumps({'samples': s['samples'], 'inputs': s['inputs'], 'ok': s['accounting_ok']}))\n"
        + _loaded_heavy()
    )
    proc = _python(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts, heavy = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    assert counts["samples"] >= 5 and counts["ok"], counts
    assert heavy == []
    # the views were computed and stored (on numpy): a mel member per sample in the tars
    members = []
    for path in (tmp_path / "out").rglob("*.tar"):
        with tarfile.open(path) as tar:
            members += tar.getnames()
    assert sum(m.endswith(".mel.npy") for m in members) == counts["samples"]


def test_k2c_without_the_extra_names_the_pip_command(tmp_path):
    code = (
        BLOCK + "from clap_corpus.core.extras import MissingExtraError\n"
        "from clap_corpus.pipeline.demo.corpus import write_demo_corpus\n"
        "from clap_corpus.pipeline.launch.run import run_corpus\n"
        "spec = write_demo_corpus('src', n_clips=3, max_seconds=3.0, k2c_model='tiny')\n"
        "try:\n"
        "    run_corpus(spec, 'out', ['--runner=FnApiRunner'])\n"
        "except MissingExtraError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('the run started without K2C installed')\n"
    )
    proc = _python(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    message = proc.stdout.strip().splitlines()[-1]
    assert "options.k2c" in message and "pip install 'clap-corpus[k2c]'" in message
    assert "torch" in message and "transformers" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.tar"))


def test_train_without_the_extra_names_the_pip_command(tmp_path):
    code = BLOCK + (
        "from clap_corpus.pipeline.cli.main import main\n"
        "raise SystemExit(main(['train', '--data', 'nowhere', '--output', 'ckpt']))\n"
    )
    proc = _python(code, str(tmp_path))
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "pip install 'clap-corpus[trainer]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_on_a_core_install_builds_without_k2c(tmp_path):
    code = BLOCK + (
        "from clap_corpus.pipeline.cli.main import main\n"
        "raise SystemExit(main(['demo', '--output', 'demo', '--clips', '4', '--runner=FnApiRunner']))\n"
    )
    proc = _python(code, str(tmp_path))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "keyword-to-caption is off" in proc.stdout and "clap-corpus[k2c]" in proc.stdout
    assert "k2c" not in (tmp_path / "demo" / "source" / "spec.yaml").read_text()

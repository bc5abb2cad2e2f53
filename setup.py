"""clap-corpus: build CLAP training corpora with Apache Beam, and train CLAP on them."""

from setuptools import find_packages, setup

# Versions are pinned where they change bytes on disk (the FFmpeg inside PyAV decodes and encodes
# the audio; pyarrow writes the Parquet; scipy's FFT computes the stored views) or where releases must
# move together (torch + torchaudio). INSTALL_REQUIRES is what building a corpus without K2C needs: no
# PyTorch, no transformers (about 5 GB with CUDA libraries, which every Dataflow worker would install).
INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "pyarrow>=18,<26",  # Beam 2.77 requires pyarrow<26
    "numpy>=2.0,<2.5",  # Beam 2.77 requires numpy<2.5
    "av==18.1.0",  # PyAV: in-process FFmpeg, bundled in the wheel
    "scipy>=1.13",  # scipy.fft: the views' FFT (transforms/views.py); part of the stored mel bytes
    "threadpoolctl>=3.1",  # one BLAS thread per worker process (the views' mel matmul)
    "pyyaml>=6.0",
    "pydantic>=2.7,<3",  # the spec model (core/config.py); also what Beam's gcp extra installs
    "matplotlib>=3.8,<4",  # run report plots (Agg backend, no display needed)
    "urllib3>=2.0,<3",  # the fetch stage's HTTP client (transforms/fetch/http.py)
]

TORCH = "torch==2.11.0"
# Keyword-to-caption (options.k2c): T5 on PyTorch; sentencepiece for T5 tokenizers and k2c/tiny/train.py.
K2C_REQUIRES = [TORCH, "transformers>=5.0,<6", "sentencepiece>=0.2,<0.3", "safetensors>=0.4"]
TRAINER_REQUIRES = [
    *K2C_REQUIRES,  # the text encoders come from transformers, as K2C's model does
    "webdataset>=1.0,<2",  # the trainer's tar reader and shuffle
    "fsspec>=2023.1",  # the trainer's storage (trainer/storage.py); gs:// and s3:// need gcsfs / s3fs
    "tensorboard>=2.15",  # train --tensorboard: torch's SummaryWriter needs it
]
# Reading a built corpus with Hugging Face datasets as the README shows (Audio(decode=False) + soundfile:
# datasets' own Audio decoding needs torchcodec and the FFmpeg shared libraries, which pip does not
# provide).
HF_REQUIRES = ["datasets>=4.0,<6", "soundfile>=0.12", "pandas>=2.2"]
# bench/ only; bench_views.py compares the views against torchaudio's and the torch path
BENCH_REQUIRES = [TORCH, "psutil>=5.9", "ffmpeg-python>=0.2", "torchaudio==2.11.0"]
# YouTube URLs in manifests (transforms/fetch/youtube.py): yt-dlp's Python API
YOUTUBE_REQUIRES = ["yt-dlp>=2025.1"]
# options.clap: CLAP scoring runs on the trainer's stack; faiss for the nearest-neighbour search (numpy
# without it, exact too)
SCORE_REQUIRES = [*TRAINER_REQUIRES, "faiss-cpu>=1.8"]

TEST_REQUIRES = [
    "pytest>=8",
    "hypothesis>=6.100",
    "ruff>=0.6",
    # LAION-CLAP 1.1.7 decodes the FLAC members with webdataset's torch_audio handler
    # (wds.decode(wds.torch_audio) -> torchaudio.load, laion_clap/training/data.py); the tests
    # decode them with soundfile, a second decoder independent of torchaudio's backend.
    "soundfile>=0.12",
    "imageio-ffmpeg>=0.5",  # the ffmpeg CLI, reference for the multichannel downmix (tests/test_codecs.py)
    # The readers the shards are promised to (Hugging Face datasets, pandas), and torchaudio, which
    # LAION-CLAP's loader and the mel reference of tests/test_views.py use: tests only.
    *HF_REQUIRES,
    *TRAINER_REQUIRES,  # the tests cover K2C and the trainer
    *BENCH_REQUIRES,  # tests/test_bench.py runs the benchmarks
    *YOUTUBE_REQUIRES,  # tests/test_fetch_youtube.py runs yt-dlp against a loopback server
    *SCORE_REQUIRES,
    # tests/test_types.py: the type checker an editor runs (pyright's engine, on PyPI with its own node);
    # pinned because a release may add checks
    "basedpyright==1.40.2",
    "mkdocs>=1.6,<2",  # tests/test_docs.py: the documentation site builds with --strict (mkdocs.yml)
    # tests/test_import_contracts.py: the layers as contracts (.importlinter); pinned to a minor range
    # because a release may add checks, and the test builds the contracts through its Python API
    "import-linter>=2.17,<2.18",
    # tests/test_dataflow.py pip-installs the staged sdist as a worker does, offline: setuptools with
    # its own bdist_wheel (70.1+); torch 2.11 wants it under 82.
    "setuptools>=70.1,<82",
]

# The source folders, installed under the clap_corpus namespace (clap_corpus.core, clap_corpus.pipeline
# ...): no package named `pipeline` or `core` lands at the top of site-packages.
FOLDERS = ("core", "transforms", "manifests", "k2c", "scoring", "pipeline", "trainer")

setup(
    name="clap-corpus",
    version="0.1.0",
    description="Build LAION-CLAP-compatible audio-caption corpora with Apache Beam, and train CLAP on them",
    # av 18.1 ships abi3 wheels from 3.11; Beam 2.77 and torch 2.11 have wheels up to 3.14.
    python_requires=">=3.11,<3.15",
    packages=[
        "clap_corpus",
        *(f"clap_corpus.{p}" for p in find_packages(include=[f"{f}*" for f in FOLDERS])),
    ],
    package_dir={"clap_corpus": "clap_corpus", **{f"clap_corpus.{f}": f for f in FOLDERS}},
    package_data={
        "clap_corpus.manifests": ["specs/*.yaml", "data/*"],
        "clap_corpus.k2c": ["tiny/model/*", "tiny/*.json"],
    },
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "k2c": K2C_REQUIRES,
        "trainer": TRAINER_REQUIRES,
        "hf": HF_REQUIRES,
        "bench": BENCH_REQUIRES,
        "test": TEST_REQUIRES,
        "youtube": YOUTUBE_REQUIRES,
        "score": SCORE_REQUIRES,
        "all": sorted(
            set(
                K2C_REQUIRES
                + TRAINER_REQUIRES
                + HF_REQUIRES
                + BENCH_REQUIRES
                + YOUTUBE_REQUIRES
                + SCORE_REQUIRES
            )
        ),
    },
    # `pip install -e .` (any frontend) makes setuptools' strict editable install: a tree of links to
    # the source files under build/, on sys.path through a .pth line, which editors and type checkers
    # read. The default (an import hook for the clap_corpus.* mapping) is invisible to them. A module
    # added later needs the install run again (README, Development).
    options={"editable_wheel": {"mode": "strict"}},
    entry_points={"console_scripts": ["clapcorpus=clap_corpus.pipeline.cli.main:main"]},
)

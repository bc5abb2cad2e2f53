# Dataflow worker image for clap-corpus (CPU workers).
#
# Workers must run the same Beam and Python as the launcher that pickled the graph, so the base is
# the Beam SDK image of the pinned version; its ENTRYPOINT (/opt/apache/beam/boot) starts the SDK
# worker and is left as it is. FFmpeg comes inside the PyAV wheel: no system packages needed.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/clapcorpus-worker:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/clapcorpus-worker:0.1.0
#   clapcorpus run ... --runner=DataflowRunner --sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/clapcorpus-worker:0.1.0
FROM apache/beam_python3.11_sdk:2.77.0

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# Building a corpus needs no PyTorch: EXTRAS=k2c (the default) adds keyword-to-caption on CPU workers,
# --build-arg EXTRAS=core builds the light image (no torch, no transformers). CPU-only torch first: the
# default Linux wheels on PyPI bring several GB of CUDA libraries that CPU workers never load; the k2c
# extra's torch==2.11.0 is then already satisfied (local labels such as +cpu do not count in that
# comparison).
ARG EXTRAS=k2c
RUN if [ "$EXTRAS" != core ]; then \
        pip install --extra-index-url https://download.pytorch.org/whl/cpu "torch==2.11.0+cpu"; fi

WORKDIR /opt/clapcorpus
# The whole build context, less what .dockerignore leaves out (tests, bench, docs, caches): setup.py's
# FOLDERS alone decides which source folders are installed.
COPY . ./
# A regular install into site-packages (the package data, such as the tiny K2C model, included).
RUN if [ "$EXTRAS" = core ]; then pip install .; else pip install ".[$EXTRAS]"; fi

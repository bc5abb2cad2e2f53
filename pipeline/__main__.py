import sys

from clap_corpus.pipeline.cli import main

sys.exit(main())

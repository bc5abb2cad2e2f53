import sys

from clap_corpus.pipeline.cli.main import main

sys.exit(main())

"""The bundled CLAP trainer that reads the pipeline's shards."""

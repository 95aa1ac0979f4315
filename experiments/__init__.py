"""ml_collections configs: `--config experiments/<name>.py:key=value,...`."""

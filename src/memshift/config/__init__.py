"""Settings: the models, TOML loading and validation, and reload."""

"""The `ragkiln` command line: thin adapters over the core (build settings, call, render)."""

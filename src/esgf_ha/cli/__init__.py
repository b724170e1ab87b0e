"""The `esgf-ha` command line: one module per job, wired together in `main.py`."""

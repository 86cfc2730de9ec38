"""The command-line client: `python -m gateway.cli` (or `mlpipe`) classifies files over HTTP.

It talks to a running gateway like any other client, so it imports nothing of
the server side (no FastAPI, numpy or settings): `--help` answers at once, and
the package works from the gateway image or a laptop alike. docs/cli.md is the
manual.
"""

"""The benchmark: model ceiling, full pipeline over HTTP, preprocessing and a naive baseline.

Run `python -m bench --help`; `make bench` runs it on the exported model.
"""

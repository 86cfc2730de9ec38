"""Write ImageNet classifier versions in the layout TF Serving and the gateway expect.

The layout and signature are defined in docs/model-contract.md; `export.export_version`
is the entry point that the CLI (export_model.py), tests and benchmarks call. The
classifier is MobileNetV2 (sources.py) or EfficientNet-Lite0 (efficientnet_source.py).
Every version carries a golden answer (golden.py); faults.py writes deliberately broken
versions for tests.
"""

"""Write MobileNetV2 model versions in the layout TF Serving and the gateway expect.

The layout and signature are defined in docs/model-contract.md; `export.export_version`
is the entry point that the CLI (export_model.py), tests and benchmarks call.
"""

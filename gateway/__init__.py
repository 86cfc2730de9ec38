"""Image-classification gateway: validates uploads, asks a model backend, ranks the answer."""

__version__ = "0.1.0"

"""The TF Serving client: status and metadata over REST, predict over gRPC or REST."""

from gateway.tfserving.client import TFServingBackend as TFServingBackend

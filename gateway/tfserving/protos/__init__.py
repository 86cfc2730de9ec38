"""TF Serving's Predict and configuration messages, generated from protos/ by `make protos`.

The generated modules register their files in POOL rather than in protobuf's default
pool, where TensorFlow registers files of the same names: the two can then be imported
into one process in either order, whatever TensorFlow's version (the generator's
docstring says why). Classes of the two pools never mix; messages cross as bytes.
"""

from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
# ModelSpec.version is a google.protobuf.Int64Value: its file must be in the pool first.
POOL.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
# ModelServerConfig.custom_model_config is a google.protobuf.Any.
POOL.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)

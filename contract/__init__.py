"""What training, serving, clients and loadtests agree on, importable without the server's dependencies.

``contract.artifacts`` (a stored model's sha256, version number and ``signature.json``),
``contract.store`` (the BentoML model store's versions; bentoml imported when listed),
``contract.triton`` (Triton model configurations from signatures), ``contract.errors``
(the error classes and their HTTP status / gRPC code), ``contract.images``
(PNG in and out, MNIST-style preprocessing, grids, latent points), ``contract.tensors``
(TensorProto <-> numpy) and ``contract.protos`` (the TF-Serving protos generated without
TensorFlow). numpy, Pillow and protobuf only; ``artifacts``, ``store`` and ``triton`` import the
standard library alone.
"""

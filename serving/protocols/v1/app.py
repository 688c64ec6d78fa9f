"""The public HTTP API (``/v1``): one FastAPI app of the routers in this package. They only translate.

Routes decode their bodies (JSON, multipart, raw ``.npy``) into the data plane's request, await
it, and encode the answer; the data plane resolves models and applies every rule. Single requests
go through the model's batcher (shared with every protocol); a client that disconnects while its
request is queued takes it out of the queue. Every error has one shape: ``{"error", "type"}``.
"""

from __future__ import annotations

from contract.errors import error_body
from serving.transport.http import protocol_app

from . import classify, generate, models, plots, vae

api = protocol_app(
    "Digits & clothes inference API",
    "Digit classification (RNNs on MNIST) and clothing generation (Fashion-MNIST VAE) on ONNX Runtime.",
    "1.0",
    error_body,
)
for module in (classify, generate, vae, plots, models):
    api.include_router(module.router)

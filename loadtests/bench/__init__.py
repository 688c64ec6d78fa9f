"""``python -m loadtests.bench``: in-process vs served vs the peers and the seed-style baseline, one run, one machine.

Measures (1) ONNX Runtime in-process per model and batch size, (2) served single-image
``POST /v1/classify`` at 1/8/32 closed-loop clients with the batch sizes the service's
``/metrics`` saw, (3) bulk ``.npy`` classification, (4) the Keras ``model.predict``-per-request
baseline at the same concurrency, (5) the 30x30 manifold served vs the seed's 900-call loop
(a measured sample, extrapolated), (6) launch-to-ready and RSS per server process, (7) side by side with
Triton (PyTriton) and the textbook BentoML service on the same model file and request (wrk; our TF-Serving
gRPC ``Predict`` with h2load), including one-connection latency on a fresh server and after the 32-connection run.
Writes ``bench.md`` and ``bench.json`` to ``results/bench-<timestamp>/`` and prints the Markdown.

One module per part: :mod:`.inprocess` (1), :mod:`.served` (2, 3, 5, 6), :mod:`.baseline` (4 and the
seed loop), :mod:`.side_by_side` (7); :mod:`.machine` says what it ran on, :mod:`.report` judges and renders.
"""

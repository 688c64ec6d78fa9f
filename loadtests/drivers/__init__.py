"""Load drivers: every way the load tests put load on a server, one module per transport.

- :mod:`.core`: the closed loop every Python driver runs (clients, measured window, tallies, percentiles).
- :mod:`.http`: raw HTTP/1.1 over asyncio streams: the benchmark's closed loop, the probes' keep-alive
  pool, closed and paced loops that keep every request's outcome (``python -m loadtests.drivers.http``).
- :mod:`.grpc`: ``grpc.aio`` calls of pre-serialized TF-Serving ``Predict`` / v2 ``ModelInfer`` requests
  (``python -m loadtests.drivers.grpc``).
- :mod:`.wrk`: HTTP load from ``wrk`` (C), and the single-image request bodies of ours and the peers.
- :mod:`.h2load`: gRPC and paced HTTP/1.1 load from ``h2load`` (C) (``python -m loadtests.drivers.h2load``).
- :mod:`.process`: running a driver in its own process (pinned, window events) and the C tools' CPU time.
"""

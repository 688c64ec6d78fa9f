"""``python -m loadtests.reliability``: the service's own reliability suite, against a server it starts.

Three parts, one table (probe | tried | expected | got | verdict), exit status 1 on any failure:

1. **Schemathesis** over ``/docs.json`` (the OpenAPI 3.1 document): generated requests, positive and
   negative, checked for server errors and for status codes, content types, headers and bodies the
   document does not declare. The request count and the 5xx count come from the server's own
   ``/metrics``, not from the tool.
2. **Hostile inputs**, per HTTP route and per gRPC method: image bombs and odd formats, malformed
   JSON, ``.npy`` and protobuf, oversize bodies, headers, names and shapes. Each expects its 4xx or
   gRPC code, the API's error shape and a short message; the server must be healthy (HTTP ready,
   gRPC SERVING) after each, and the workers' RSS is checked after the heavy ones.
3. **Faults under load**: slow clients (others unaffected), overload at 150 % of the measured
   capacity (fast 503s, bounded p99), ``kill -9`` of a worker (only its in-flight requests may fail,
   replaced within 5 s, throughput back to 90 % within 10 s), a soak at 80 % (0 errors, flat p99,
   RSS growth < 5 % after warm-up) and last SIGTERM (not one accepted request lost, exit 0).

``--quick`` is the bounded form ``make test`` runs (tests/e2e/test_reliability.py); ``make
reliability`` runs the full one (``--minutes 10``). Loopback only; every loop is bounded in count
and time. Load comes from :mod:`loadtests.drivers`: wrk for the capacity, h2load for the paced
loads, the HTTP driver's keep-alive closed loop for the rest.

One module per probe (:mod:`.schemathesis_probe`, :mod:`.hostile`, :mod:`.capacity`,
:mod:`.slow_clients`, :mod:`.overload`, :mod:`.kill9`, :mod:`.soak`, :mod:`.sigterm`); :mod:`.target`
holds the server under test, the plan and the table's rows; :mod:`.rawhttp` sends one raw request.
"""

"""Load tests (locust, ``python -m loadtests run``) and the side-by-side benchmark (``python -m loadtests.bench``)."""

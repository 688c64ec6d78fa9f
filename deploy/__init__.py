"""Packaging and deployment: the Bento, its container image, Kubernetes manifests (``python -m deploy``)."""

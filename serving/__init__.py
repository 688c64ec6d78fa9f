"""Serving: ONNX Runtime behind a BentoML HTTP front and a TF-Serving-compatible gRPC front."""

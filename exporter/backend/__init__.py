"""Polygraphy runners for the backends cmc compares (PyTorch here; onnxruntime and TensorRT come from Polygraphy)."""

"""cmc.plugins: one folder per compressed operator (PyTorch op, training semantics, ONNX contract)."""

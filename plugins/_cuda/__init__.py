"""CUDA kernels of trt_plugins/ (the ones the TensorRT plugins run) as the cmc ops' CUDA kernels.

* ``loader.load()``: the torch.utils.cpp_extension build of ``binding.cpp`` + the kernel sources,
  made on first use; ``None`` with ``loader.unavailable_reason()`` where it cannot exist (CPU-only
  PyTorch, no GPU, no nvcc).
* ``register``: registers ``cmc::adder_conv``, ``cmc::binary_conv`` and ``cmc::binary_conv_train``
  'cuda' kernels (called by the op modules) and the AdderConv CUDA backward. CPU tensors never come
  here: they stay on the reference implementations.
"""
from .loader import load, unavailable_reason

__all__ = ["load", "unavailable_reason"]

"""A Polygraphy runner for a PyTorch module on the CPU (Polygraphy's own PytRunner moves every input
to CUDA and splits a single output tensor along its batch dimension)."""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata


class TorchRunner(BaseRunner):
    def __init__(self, model: torch.nn.Module, input_names, output_names, input_shapes, name=None):
        """input_shapes: one shape per input; its first (batch) dimension is treated as dynamic."""
        super().__init__(name=name, prefix="pytorch-runner")
        self._model = model
        self._input_names = list(input_names)
        self._input_shapes = [("batch", *tuple(s)[1:]) for s in input_shapes]
        self.output_names = list(output_names)

    def activate_impl(self):
        try:
            self._model.eval()
        except NotImplementedError:  # torch.export's unlifted modules are inference graphs already
            pass

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for n, shape in zip(self._input_names, self._input_shapes):
            meta.add(n, np.float32, shape)
        return meta

    def infer_impl(self, feed_dict):
        inputs = [torch.from_numpy(np.asarray(feed_dict[n])) for n in self._input_names]
        start = time.time()
        with torch.no_grad():
            out = self._model(*inputs)
        end = time.time()
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(outs) != len(self.output_names):
            raise ValueError(f"model returned {len(outs)} outputs, the ONNX model has {len(self.output_names)}")
        self.inference_time = end - start
        return OrderedDict((n, np.ascontiguousarray(o.detach().cpu().numpy())) for n, o in zip(self.output_names, outs))

    def deactivate_impl(self):
        pass

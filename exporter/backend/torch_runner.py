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
    def __init__(self, model: torch.nn.Module, input_names, output_names, input_shapes, name=None,
                 batch_slice: int | None = None):
        """input_shapes: one shape per input; its first (batch) dimension is treated as dynamic.

        batch_slice: run a batch that is a larger multiple of it as consecutive slices of this many
        samples and concatenate the outputs (an eval-mode model computes each sample on its own). Research
        layers that materialise a whole-batch tensor (AdderNet's adder2d unfold: N x M x CK x L values,
        gigabytes at 224x224) then hold one slice's worth; outputs without a leading batch dimension of the
        slice's size fall back to one run of the whole batch."""
        super().__init__(name=name, prefix="pytorch-runner")
        self._model = model
        self._batch_slice = batch_slice
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
            outs = self._run(inputs)
        end = time.time()
        if len(outs) != len(self.output_names):
            raise ValueError(f"model returned {len(outs)} outputs, the ONNX model has {len(self.output_names)}")
        self.inference_time = end - start
        return OrderedDict((n, np.ascontiguousarray(o.detach().cpu().numpy())) for n, o in zip(self.output_names, outs))

    def _run(self, inputs):
        def as_list(out):
            return list(out) if isinstance(out, (tuple, list)) else [out]

        step = self._batch_slice
        n = inputs[0].shape[0] if inputs and inputs[0].dim() else 0
        if step and n > step and n % step == 0:
            parts = [as_list(self._model(*[t[i:i + step] for t in inputs])) for i in range(0, n, step)]
            if all(isinstance(o, torch.Tensor) and o.dim() >= 1 and o.shape[0] == step for p in parts for o in p):
                return [torch.cat(column, 0) for column in zip(*parts)]
        return as_list(self._model(*inputs))

    def deactivate_impl(self):
        pass

"""A Polygraphy runner for a PyTorch module on the CPU (Polygraphy's own PytRunner moves every input
to CUDA and splits a single output tensor along its batch dimension)."""
from __future__ import annotations

import hashlib
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
        slice's size fall back to one run of the whole batch.

        Sliced outputs are kept per slice, keyed by the slice's input bytes: a sample that comes again (the
        verify feeds are prefixes of one sample stream, so batch 1's sample is batch 5's first) is computed
        once. ``slices_run`` and ``slices_reused`` count both, for the report."""
        super().__init__(name=name, prefix="pytorch-runner")
        self._model = model
        self._batch_slice = batch_slice
        self._input_names = list(input_names)
        self._input_shapes = [("batch", *tuple(s)[1:]) for s in input_shapes]
        self.output_names = list(output_names)
        self._outputs_of_slice: dict[bytes, list[torch.Tensor]] = {}
        self._whole_batches_only = False  # an output without the slice's leading batch dimension was seen
        self.slices_run = self.slices_reused = 0

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
        if step and not self._whole_batches_only and n >= step and n % step == 0:
            parts = []
            for i in range(0, n, step):
                part = [t[i:i + step] for t in inputs]
                key = _key(part)
                if key in self._outputs_of_slice:
                    parts.append(self._outputs_of_slice[key])
                    self.slices_reused += 1
                    continue
                out = as_list(self._model(*part))
                if not all(isinstance(o, torch.Tensor) and o.dim() >= 1 and o.shape[0] == step for o in out):
                    self._whole_batches_only = True
                    self._outputs_of_slice.clear()
                    break
                self._outputs_of_slice[key] = out
                self.slices_run += 1
                parts.append(out)
            else:
                return [torch.cat(column, 0) for column in zip(*parts)]
        return as_list(self._model(*inputs))

    def remember(self, inputs, outputs) -> bool:
        """Outputs already computed for one slice's inputs (by the same model, in eval mode, without grad):
        a feed holding that slice reuses them. False (nothing kept) where they do not fit a slice."""
        step = self._batch_slice
        outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        if not step or len(outs) != len(self.output_names) or any(
                t.dim() == 0 or t.shape[0] != step for t in inputs) or not all(
                isinstance(o, torch.Tensor) and o.dim() >= 1 and o.shape[0] == step for o in outs):
            return False
        self._outputs_of_slice[_key(inputs)] = [o.detach() for o in outs]
        return True

    def deactivate_impl(self):
        self._outputs_of_slice.clear()


def _key(tensors) -> bytes:
    """The identity of a slice's inputs: dtype, shape and every byte (a sample seen again is the same key)."""
    h = hashlib.blake2b(digest_size=20)
    for t in tensors:
        t = t.contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.digest()

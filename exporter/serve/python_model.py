# The Python-backend model cmc writes into a Triton model repository (copied there as model.py).
# It runs the exported ONNX (com.cmc nodes through their function bodies) in onnxruntime; the
# execution provider comes from the config's "execution_provider" parameter. It imports only
# numpy, onnxruntime and Triton's own triton_python_backend_utils: it runs inside the server's
# Python stub, not in cmc's environment.
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        provider = params.get("execution_provider", "CPUExecutionProvider")
        if provider not in ort.get_available_providers():
            # Loading fails with the reason rather than silently running somewhere else.
            raise pb_utils.TritonModelException(
                f"onnxruntime {ort.__version__} here has no {provider} (available: {ort.get_available_providers()})")
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", "0"))
        if threads > 0:
            options.intra_op_num_threads = threads
        # onnxruntime's worker threads spin while idle by default; inside a server they compete for the
        # cores with Triton's own threads and the stub (measured: benchmarks/serve_cpu.py), so they sleep.
        options.add_session_config_entry("session.intra_op.allow_spinning", params.get("intra_op_spinning", "0"))
        self.session = ort.InferenceSession(path, options, providers=[provider])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0

    def execute(self, requests):
        # Requests the dynamic batcher grouped run as one onnxruntime call, then are split again.
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names} for r in requests]
        if self.batched and len(feeds) > 1:
            sizes = [f[self.input_names[0]].shape[0] for f in feeds]
            joined = {n: np.concatenate([f[n] for f in feeds]) for n in self.input_names}
            outs = self.session.run(self.output_names, joined)
            bounds = np.cumsum(sizes)[:-1]
            per_request = [list(parts) for parts in zip(*(np.split(o, bounds) for o in outs))]
        else:
            per_request = [self.session.run(self.output_names, f) for f in feeds]
        return [pb_utils.InferenceResponse([pb_utils.Tensor(n, np.ascontiguousarray(v))
                                            for n, v in zip(self.output_names, outs)])
                for outs in per_request]

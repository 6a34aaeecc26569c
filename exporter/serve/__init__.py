"""Serving what cmc exports with Triton Inference Server.

``repository``: the model repository ``cmc-export --to triton`` writes (configs, Python-backend model);
``environment``: where the ``tritonserver`` binary comes from (an isolated venv holding nvidia-pytriton,
or the user's own binary on PATH); ``launcher``: ``cmc serve`` (start, wait until ready, stop cleanly);
``wire_check``: ``cmc serve --check`` (parity over HTTP and gRPC); ``cli``: the ``cmc`` command.
"""

"""`cmc-export shrink`: remove pruned channels and write the shrunk model as a torch.export .pt2."""
from __future__ import annotations

import torch

from .artifacts import Staging, sha256
from .errors import CmcError
from .pipeline import ExportOptions, Steps, log, prepare, versions


def run_shrink(model, *, arch=None, input_shape=None, out_dir="cmc_shrunk", accept_deviation=False,
               allow_pickle=False, arch_args=None, slim=None, align_channels=1) -> int:
    from .load import artifact_stem
    from .onnx_export import capture

    from .idioms import settled_scope

    with Staging(out_dir) as stage, settled_scope():
        steps = Steps()
        opts = ExportOptions(model=model, arch=arch, input_shape=input_shape, allow_pickle=allow_pickle,
                             shrink=True, accept_deviation=accept_deviation, arch_args=dict(arch_args or {}),
                             slim=slim, align_channels=align_channels)
        reference, deploy, x, report = prepare(opts, steps)
        if report["shrink"].get("skipped"):
            raise CmcError(f"nothing to shrink: {report['shrink']['skipped']}")
        with steps("save", "torch.export program"):
            ep, dynamic, notes = capture(deploy, x)
            name = f"{artifact_stem(model)}.shrunk.pt2"
            torch.export.save(ep, str(stage.path(name)))
            report["output"] = {"program": name, "dynamic_batch": dynamic, "notes": notes}
        report["artifacts"] = {n: {"sha256": sha256(stage.dir / n)} for n in stage.files}
        report["versions"] = versions()
        stage.write_json("shrink_report.json", report)
        placed = stage.commit()
    for p in placed:
        log(f"wrote {p}")
    print(f"cmc-export: ok: shrunk model in {out_dir}")
    return 0

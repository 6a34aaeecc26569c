"""Verify says when its check proves nothing (issue 20): outputs that are the same for every verify input
get a warning on stderr and in the report, and `cmc-export verify` fails unless --accept-constant-output."""
import json
import xml.etree.ElementTree as ET

import pytest
import torch

from cmc.exporter.cli import main
from samples.make_checkpoints import calibrate
from tests.exporter.untrained_bn_models import tiny_addernet

ARCH = ["--arch", "tests.exporter.untrained_bn_models:tiny_addernet", "--input-shape", "1x3x8x8"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    fresh = tiny_addernet().eval()
    torch.save(fresh.state_dict(), d / "fresh.pth")
    trained = calibrate(tiny_addernet(), batches=2, batch_size=8, shape=(3, 8, 8))
    torch.save(trained.state_dict(), d / "calibrated.pth")
    return d


def _export(ckpt, out, capsys):
    assert main([str(ckpt), *ARCH, "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    return report, capsys.readouterr().err


def test_untrained_batchnorm_export_warns(checkpoints, tmp_path, in_repo_root, capsys):
    report, err = _export(checkpoints / "fresh.pth", tmp_path / "out", capsys)
    parity = report["parity"]
    assert parity["passed"] is True and parity["worst"] == 0.0  # "passes", and proves nothing
    [found] = parity["constant_outputs"]
    assert found["inputs"] == 6 and found["spread_of_max_abs"] == 0.0  # batch 1 + batch 5
    assert "proves nothing" in parity["warning"]
    assert "warning: the parity check proves nothing" in err


def test_calibrated_model_has_no_warning(checkpoints, tmp_path, in_repo_root, capsys):
    report, err = _export(checkpoints / "calibrated.pth", tmp_path / "out", capsys)
    assert report["parity"]["passed"] is True and report["parity"]["constant_outputs"] == []
    assert "warning" not in report["parity"] and "proves nothing" not in err


@pytest.mark.parametrize("accept", [False, True])
def test_verify_fails_unless_accepted(checkpoints, tmp_path, in_repo_root, capsys, accept):
    ckpt = checkpoints / "fresh.pth"
    _export(ckpt, tmp_path / "out", capsys)
    onnx_path = next((tmp_path / "out").glob("*.onnx"))
    j, x = tmp_path / "v.json", tmp_path / "v.xml"
    rc = main(["verify", str(onnx_path), str(ckpt), *ARCH, "--json", str(j), "--junit", str(x)]
              + (["--accept-constant-output"] if accept else []))
    err = capsys.readouterr().err
    verdict = json.loads(j.read_text())
    assert verdict["constant_outputs"] and verdict["constant_outputs_accepted"] is accept
    suite = ET.parse(x).getroot().find("testsuite")
    case = next(tc for tc in suite.iter("testcase") if tc.get("name") == "outputs_vary_with_input")
    if accept:
        assert rc == 0 and "warning:" in err and "proves nothing" in err
        assert case.find("failure") is None and suite.get("failures") == "0"
    else:
        assert rc == 3 and "--accept-constant-output" in err.splitlines()[-1]
        assert case.find("failure") is not None and suite.get("failures") == "1"

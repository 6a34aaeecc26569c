"""Checkpoint forms users actually have."""
import pytest
import torch

from cmc.exporter.errors import CmcError
from cmc.exporter.load import load_model, parse_shape, unwrap_state_dict

from . import user_models

ARCH = "tests.exporter.user_models:tiny_adder"


@pytest.mark.parametrize("wrap", ["plain", "dataparallel", "state_dict", "model", "nested"])
def test_checkpoint_wrappers(wrap, tmp_path, in_repo_root):
    sd = user_models.tiny_adder().state_dict()
    obj = {
        "plain": sd,
        "dataparallel": {f"module.{k}": v for k, v in sd.items()},
        "state_dict": {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3, "best_prec1": 91.2},
        "model": {"model": sd, "optimizer": {}},
        "nested": {"checkpoint": 1, "state_dict": {"model": sd}},
    }[wrap]
    torch.save(obj, tmp_path / "c.pth")
    loaded = load_model(tmp_path / "c.pth", ARCH)
    for k, v in loaded.module.state_dict().items():
        assert torch.equal(v, sd[k])


def test_real_dataparallel_checkpoint(tmp_path, in_repo_root):
    model = user_models.tiny_adder()
    torch.save(torch.nn.DataParallel(model).state_dict(), tmp_path / "dp.pth")
    loaded = load_model(tmp_path / "dp.pth", ARCH)
    assert any("DataParallel" in n for n in loaded.notes)


def test_unwrap_rejects_non_state_dicts():
    with pytest.raises(CmcError):
        unwrap_state_dict({"epoch": 3}, [])


@pytest.mark.parametrize("text,ok", [("1x3x32x32", (1, 3, 32, 32)), ("2X3X8X8", (2, 3, 8, 8)), ("1x3x0x4", None),
                                     ("1x-3x4x4", None), ("abc", None), ("", None)])
def test_parse_shape(text, ok):
    if ok:
        assert parse_shape(text) == ok
    else:
        with pytest.raises(CmcError):
            parse_shape(text)


def test_profiler_buffers_and_old_batchnorm_keys_are_tolerated(tmp_path, in_repo_root):
    sd = dict(user_models.tiny_adder().state_dict())
    sd["conv1.total_ops"] = torch.zeros(1)
    sd["total_params"] = torch.zeros(1)
    del sd["bn1.num_batches_tracked"]
    torch.save(sd, tmp_path / "c.pth")
    loaded = load_model(tmp_path / "c.pth", ARCH)
    assert any("thop" in n for n in loaded.notes) and any("num_batches_tracked" in n for n in loaded.notes)


def test_arch_missing_dependency_is_not_blamed_on_pythonpath(tmp_path, monkeypatch):
    """A model module that imports an uninstalled package: the error names that package, not PYTHONPATH."""
    import pytest

    from cmc.exporter.arch import resolve_arch
    from cmc.exporter.errors import CmcError

    (tmp_path / "needs_dep_model.py").write_text("import cmc_no_such_dependency\n\ndef net():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CmcError) as e:
        resolve_arch("needs_dep_model:net")
    assert "cmc_no_such_dependency" in str(e.value) and "PYTHONPATH" not in str(e.value)
    with pytest.raises(CmcError, match="PYTHONPATH"):
        resolve_arch("no_such_model_module_here:net")

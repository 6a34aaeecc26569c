"""Bad input: a one-line error, a non-zero exit code, and nothing in the output folder."""
import os
import pickle
import random
import zipfile

import pytest
import torch

from cmc.exporter.cli import main

from . import user_models

TINY = "tests.exporter.user_models:tiny_adder"


def _sd(path, model=None):
    torch.save((model or user_models.tiny_adder()).state_dict(), path)
    return str(path)


def _cases(tmp):
    """(id, argv) pairs; each must fail cleanly."""
    good = _sd(tmp / "good.pth")
    corrupt = tmp / "corrupt.pth"
    corrupt.write_bytes(os.urandom(4096))  # different garbage on every run: any of it must fail cleanly
    for i, seed in enumerate(range(20)):
        (tmp / f"garbage{i}.pth").write_bytes(random.Random(seed).randbytes(512 + 97 * i))
    empty = tmp / "empty.pth"
    empty.write_bytes(b"")
    truncated = tmp / "truncated.pth"
    truncated.write_bytes(open(good, "rb").read()[:2000])
    nan = user_models.tiny_adder()
    with torch.no_grad():
        nan.add1.adder[0, 0, 0, 0] = float("nan")
    nan_path = _sd(tmp / "nan.pth", nan)
    wrong_shape = user_models.tiny_adder().state_dict()
    wrong_shape["fc.weight"] = torch.zeros(5, 12)
    torch.save(wrong_shape, tmp / "wrong_shape.pth")
    pickled = tmp / "pickled.pth"
    torch.save(user_models.tiny_adder(), pickled)
    not_ckpt = tmp / "list.pth"
    torch.save([1, 2, 3], not_ckpt)
    bad_pt2 = tmp / "bad.pt2"
    with zipfile.ZipFile(bad_pt2, "w") as z:
        z.writestr("junk.txt", "not a program")
    bnn = _sd(tmp / "bnn.pth", user_models.tiny_bnn())
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return [
        ("missing file", [str(tmp / "nope.pth"), "--arch", TINY]),
        ("empty file", [str(empty), "--arch", TINY]),
        ("corrupt file", [str(corrupt), "--arch", TINY]),
        *[(f"garbage bytes {i}", [str(tmp / f"garbage{i}.pth"), "--arch", TINY]) for i in range(20)],
        ("truncated checkpoint", [str(truncated), "--arch", TINY]),
        ("not a state_dict", [str(not_ckpt), "--arch", TINY]),
        ("state_dict without --arch", [good]),
        ("--arch without colon", [good, "--arch", "tests.exporter.user_models"]),
        ("--arch module missing", [good, "--arch", "no_such_module_xyz:fn"]),
        ("--arch attribute missing", [good, "--arch", "tests.exporter.user_models:nope"]),
        ("--arch returns non-module", [good, "--arch", "tests.exporter.user_models:not_a_module"]),
        ("--arch constructor raises", [good, "--arch", "tests.exporter.user_models:raises"]),
        ("wrong --arch (keys)", [good, "--arch", "tests.exporter.user_models:tiny_bnn"]),
        ("tensor shape mismatch", [str(tmp / "wrong_shape.pth"), "--arch", TINY]),
        ("bad --input-shape syntax", [good, "--arch", TINY, "--input-shape", "1x3xAx8"]),
        ("input shape the model rejects", [good, "--arch", TINY, "--input-shape", "1x5x8x8"]),
        ("NaN weights", [nan_path, "--arch", TINY]),
        ("pickle without opt-in", [str(pickled), "--arch", TINY]),
        ("corrupt .pt2", [str(bad_pt2), "--allow-pickle"]),
        (".pt2 without --allow-pickle", [str(bad_pt2)]),
        ("look-alike layer that does not fit", [_sd(tmp / "broken.pth", user_models.broken_adder()), "--arch", "tests.exporter.user_models:broken_adder"]),
        ("model returns a dict", [_sd(tmp / "dict.pth", user_models.returns_dict()), "--arch", "tests.exporter.user_models:returns_dict"]),
        ("output path is a file", [bnn, "--arch", "tests.exporter.user_models:tiny_bnn", "-o", str(a_file)]),
        ("unknown --to", [good, "--arch", TINY, "--to", "tflite"]),
        ("bad --verify-batch", [good, "--arch", TINY, "--verify-batch", "0,5"]),
        ("model path is a folder", [str(tmp), "--arch", TINY]),
    ]


def test_every_bad_input_fails_cleanly(tmp_path, in_repo_root, capsys):
    cases = _cases(tmp_path)
    assert len(cases) >= 15
    for name, argv in cases:
        out = tmp_path / f"out_{abs(hash(name))}"
        if "-o" not in argv:
            argv = argv + ["-o", str(out)]
        rc = main(argv)
        cap = capsys.readouterr()
        errors = [line for line in cap.err.splitlines() if not line.startswith("[cmc]")]
        assert rc != 0, f"{name}: exit code 0"
        assert len(errors) == 1 and errors[0].startswith("cmc-export: error: "), f"{name}: {cap.err!r}"
        assert "Traceback" not in cap.err, name
        assert not out.exists() or not any(out.iterdir()), f"{name}: left files in {out}"
        leftovers = [p.name for p in tmp_path.iterdir() if "cmc-staging" in p.name]
        assert not leftovers, f"{name}: staging left behind: {leftovers}"


def test_pickle_with_opt_in_loads(tmp_path, in_repo_root):
    pickled = tmp_path / "pickled.pth"
    torch.save(user_models.tiny_adder(), pickled)
    assert main([str(pickled), "--allow-pickle", "-o", str(tmp_path / "o"), "--input-shape", "1x3x8x8"]) == 0


def test_unpickling_never_runs_without_opt_in(tmp_path, in_repo_root, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    assert main([str(path), "--arch", TINY, "-o", str(tmp_path / "o")]) != 0
    assert not marker.exists()


def test_pt2_is_never_opened_without_opt_in(tmp_path, in_repo_root, capsys):
    """torch.export.load unpickles parts of a .pt2 with the full unpickler: refused before it is read."""
    import zipfile

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt2"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data/weights/weight_0", pickle.dumps(Evil()))
    assert main([str(path), "-o", str(tmp_path / "o")]) == 2
    assert not marker.exists() and not (tmp_path / "o").exists()
    assert "--allow-pickle" in capsys.readouterr().err.strip().splitlines()[-1]


def test_parity_failure_exits_3_and_writes_nothing(tmp_path, in_repo_root, monkeypatch, capsys):
    from cmc.exporter import onnx_export

    real = onnx_export.fold_into_epilogues

    def sabotage(model):
        folded = real(model)
        for node in model.graph:  # corrupt one fused scale: the ONNX no longer matches PyTorch
            if node.domain == "com.cmc":
                t = node.inputs[2].const_value.numpy().copy() * 1.5
                node.inputs[2].const_value = onnx_export.ir.tensor(t)
                break
        return folded

    monkeypatch.setattr(onnx_export, "fold_into_epilogues", sabotage)
    good = _sd(tmp_path / "good.pth")
    out = tmp_path / "o"
    rc = main([good, "--arch", TINY, "--input-shape", "1x3x8x8", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 3
    last = err.splitlines()[-1]
    assert last.startswith("cmc-export: error: parity check failed")
    assert "first diverging layer: bn2" in last and "add1/AdderConv" in last  # the layer we corrupted
    assert not out.exists()


def test_to_trt_without_tensorrt_is_one_line_and_writes_nothing(tmp_path, in_repo_root, capsys):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the missing-TensorRT path cannot be exercised")
    except ImportError:
        pass
    out = tmp_path / "o"
    rc = main([_sd(tmp_path / "good.pth"), "--arch", TINY, "--to", "trt", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "TensorRT" in err[0] and "install" in err[0]
    assert not out.exists()

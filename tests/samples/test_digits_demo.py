"""The real-data demo: trained AdderNet and BNN give identical predictions in PyTorch and onnxruntime."""
import pytest

pytest.importorskip("sklearn")


def test_digits_demo(tmp_path, in_repo_root):
    from samples.digits_demo import run

    results = run(epochs=8, out_dir=str(tmp_path))
    for name in ("addernet", "bnn"):
        r = results[name]
        assert r["prediction_agreement"] == 1.0, name
        assert abs(r["test_accuracy_pytorch"] - r["test_accuracy_onnxruntime"]) < 1e-6, name
        assert r["test_accuracy_pytorch"] > 0.8, f"{name} did not learn: {r}"

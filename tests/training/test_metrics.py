import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics
from sklearn.metrics import f1_score

from fluid.training.metrics import METRIC_KEYS, calibration, compute_metrics, log_loss, top_k_accuracy


def test_contract_keys_and_values_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=200)
    proba = rng.dirichlet(np.ones(4), size=200)
    proba[np.arange(100), y[:100]] += 1.0  # half the items are predicted right
    proba /= proba.sum(axis=1, keepdims=True)
    m = compute_metrics(y, proba, ["a", "b", "c", "d"], languages=["cz"] * 150 + ["sk"] * 50,
                        label_sources=["human"] * 200, n_skipped=3)
    for key in METRIC_KEYS + ("per_label_source",):
        assert key in m
    pred = proba.argmax(1)
    assert m["accuracy"] == pytest.approx(np.mean(pred == y))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["log_loss"] == pytest.approx(sklearn_metrics.log_loss(y, proba, labels=[0, 1, 2, 3]))
    assert m["n_items"] == 200 and m["n_skipped"] == 3
    assert sum(c["support"] for c in m["per_class"].values()) == 200
    assert m["per_language"]["sk"]["n"] == 50
    assert np.asarray(m["confusion_matrix"]).sum() == 200


def test_unknown_labels_count_as_errors_not_as_a_class():
    y = np.array([0, 1, -1])
    proba = np.eye(2)[[0, 1, 1]]
    m = compute_metrics(y, proba, ["a", "b"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["macro_recall"] == pytest.approx(1.0)  # only the known classes a and b enter the macro average
    assert m["n_unknown_label"] == 1


def test_top_k_and_calibration_by_hand():
    proba = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    assert top_k_accuracy(np.array([1, 0]), proba, k=2) == pytest.approx(0.5)
    cal = calibration(np.array([0, 0]), proba, bins=10)
    # item 1: conf 0.5 correct (bin 4), item 2: conf 0.7 wrong (bin 6) → ECE = ½·0.5 + ½·0.7
    assert cal["ece"] == pytest.approx(0.6)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="proba must be 2 x 3"):
        compute_metrics([0, 1], np.zeros((2, 2)), ["a", "b", "c"])


def test_log_loss_by_hand_leaves_unknown_labels_out_and_stays_finite():
    proba = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    y = np.array([0, 0, 0, 1, -1])  # three items of class a at p=0.5, one of class b at p=0.1, one unknown label
    assert log_loss(y, proba) == pytest.approx((3 * np.log(2) + np.log(10)) / 4)
    assert compute_metrics(y, proba, ["a", "b"])["log_loss"] == pytest.approx(log_loss(y, proba))
    assert np.isnan(log_loss(np.array([-1]), proba[:1]))
    assert log_loss(np.array([1]), np.array([[1.0, 0.0]])) == pytest.approx(-np.log(1e-12))  # clipped, finite

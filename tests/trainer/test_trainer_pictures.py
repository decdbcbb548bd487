"""Training pictures: the net diagram's boxes (Caffe's LeNet blob shapes), histograms, confusion matrix, curves."""
from __future__ import annotations

import numpy as np

from feedstock.trainer.draw import draw_net, net_boxes
from feedstock.trainer.models import lenet, otto_mlp
from feedstock.trainer.plots import extra_metrics, plot_confusion, plot_weight_histograms

PNG = b"\x89PNG\r\n\x1a\n"


def test_lenet_diagram_boxes_follow_caffes_blob_shapes():
    """examples/mnist/lenet_train_test.prototxt with batch 64: the shapes Caffe logs at net setup."""
    boxes = net_boxes(lenet().build(), batch=64)
    assert [(b.kind, b.name, b.top) for b in boxes] == [
        ("Input", "data", (64, 1, 28, 28)),
        ("Convolution", "conv1", (64, 20, 24, 24)),
        ("Pooling", "pool1", (64, 20, 12, 12)),
        ("Convolution", "conv2", (64, 50, 8, 8)),
        ("Pooling", "pool2", (64, 50, 4, 4)),
        ("InnerProduct", "ip1", (64, 500)),
        ("ReLU", "relu1", (64, 500)),
        ("InnerProduct", "ip2", (64, 10)),
        ("SoftmaxWithLoss", "loss", ()),
    ]
    assert boxes[1].detail == "kernel 5x5, stride 1, pad 0"
    assert boxes[2].detail == "MAX kernel 2x2, stride 2, pad 0"
    assert boxes[5].detail == "num_output 500"


def test_pictures_are_pngs(tmp_path):
    net = otto_mlp(hidden=(16, 8)).build()
    assert [b.detail for b in net_boxes(net) if b.kind == "Dropout"] == ["ratio 0.3", "ratio 0.3"]
    for path in (draw_net(net, tmp_path / "net.png", title="otto"),
                 plot_weight_histograms(net, tmp_path / "weights.png"),
                 plot_confusion(np.array([[5, 1], [0, 4]]), tmp_path / "confusion.png", class_names=["a", "b"])):
        assert path.read_bytes()[:8] == PNG


def test_curves_plot_every_extra_test_metric():
    history = {"iter": [0, 1], "test_iter": [0, 2], "test_loss": [2.0, 1.0], "test_accuracy": [0.1, 0.5],
               "test_log_loss": [2.0, 1.0], "test_mean_iou": [0.1, 0.3], "test_per_class_iou": [[0.1], [0.2]]}
    assert extra_metrics(history) == ["test_log_loss", "test_mean_iou"]

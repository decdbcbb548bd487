"""Pictures that read at a glance: distinct curves with legends off the data, pixels named as pixels,
the truth | prediction | overlay sheet with its legend, the sample grid."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from feedstock.palette import HEAD, SIDE, class_bgr, legend, mask_picture, segmentation_sheet

HISTORY = {"iter": list(range(10)), "train_loss": [2.0 - 0.1 * i for i in range(10)],
           "train_accuracy": [0.1 * i for i in range(10)], "test_iter": [0, 5, 9],
           "test_loss": [2.0, 1.2, 0.9], "test_accuracy": [0.1, 0.5, 0.7]}


def _legend_texts(_path):
    """The legend entries of each axes of a curves PNG, by re-running the plot on a captured figure."""
    import matplotlib.figure

    texts, save = [], matplotlib.figure.Figure.savefig

    def capture(fig, *a, **k):
        for ax in fig.axes:
            leg = ax.get_legend()
            texts.append([t.get_text() for t in leg.get_texts()] if leg else [])
            if leg is not None:  # under the axes: its top edge is below the plotting area's bottom
                fig.canvas.draw()
                assert leg.get_window_extent().y1 <= ax.get_window_extent().y0 + 1
        return save(fig, *a, **k)

    return texts, capture


def test_a_curve_equal_to_another_is_named_not_drawn_twice(tmp_path, monkeypatch):
    import matplotlib.figure

    from feedstock.trainer.plots import distinct_extras, plot_curves

    same = dict(HISTORY, test_log_loss=list(HISTORY["test_loss"]), test_mean_iou=[0.05, 0.3, 0.4])
    assert distinct_extras(same) == ["test_mean_iou"]
    texts, capture = _legend_texts(tmp_path)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    plot_curves(same, tmp_path / "c.png")
    assert texts == [["train", "test = log-loss"], ["train", "test", "test mean-iou"]]
    differs = dict(HISTORY, test_log_loss=[2.1, 1.3, 1.0])  # a real difference: drawn
    assert distinct_extras(differs) == ["test_log_loss"]


def test_a_segmentation_confusion_counts_pixels(tmp_path, monkeypatch):
    import matplotlib.figure

    from feedstock.trainer.plots import plot_confusion

    titles, save = [], matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: (titles.append((fig.axes[0].get_title(), fig.axes[0].get_xlabel())),
                                              save(fig, *a, **k))[1])
    plot_confusion(np.array([[3000, 10], [20, 970]]), tmp_path / "p.png", unit="pixels")
    plot_confusion(np.array([[3, 1], [0, 4]]), tmp_path / "r.png")
    assert titles[0] == ("confusion matrix (4,000 pixels, pixel accuracy 0.9925)", "predicted class (pixels)")
    assert titles[1] == ("confusion matrix (8 records, accuracy 0.8750)", "predicted class (records)")


def test_the_sheet_shows_truth_prediction_and_overlay_with_a_legend():
    image = np.full((3, 20, 40), 90, np.uint8)
    truth = np.zeros((20, 40), np.uint8)
    truth[5:15, 5:15] = 1
    pred = np.zeros((20, 40), np.uint8)
    pred[5:15, 20:30] = 2
    sheet = segmentation_sheet([(image, truth, pred), (image, None, pred)], class_names=["bg", "cat", "dog"])
    gap = 4
    assert sheet.shape[1] == 3 * SIDE + 4 * gap
    top = HEAD + gap  # the column titles
    row = sheet[top:top + SIDE]
    scale = SIDE / 40  # 40x20 drawn at 160x80, centred vertically
    y = int((SIDE - 20 * scale) // 2 + 10 * scale)
    x_truth, x_pred = int(gap + 10 * scale), int(2 * gap + SIDE + 25 * scale)
    np.testing.assert_array_equal(row[y, x_truth], class_bgr(1))  # truth column: class 1 where the truth has it
    np.testing.assert_array_equal(row[y, x_pred], class_bgr(2))  # prediction column: class 2
    x_over = int(3 * gap + 2 * SIDE + 25 * scale)
    assert tuple(row[y, x_over]) not in ((90, 90, 90), class_bgr(2))  # blended over the grey image
    second = sheet[top + SIDE + HEAD + gap: top + 2 * SIDE + HEAD + gap]
    assert (second[:, gap:gap + SIDE] == 32).all()  # no mask: an empty truth cell
    strip = sheet[top + 2 * (SIDE + HEAD + gap):]
    for k in (0, 1, 2):  # classes present get a swatch
        assert (strip == np.array(class_bgr(k), np.uint8)).all(axis=2).sum() >= 100
    with pytest.raises(ValueError):
        segmentation_sheet([])


def test_legend_wraps_and_mask_pictures_use_the_class_colours():
    strip = legend(list(range(12)), None, width=200)
    assert strip.shape[1] == 200 and strip.shape[0] > 30  # more than one row
    m = np.array([[0, 1], [2, 255]], np.uint8)
    pic = mask_picture(m)
    assert [tuple(pic[i, j]) for i in range(2) for j in range(2)] == [class_bgr(k) for k in (0, 1, 2, 255)]


def test_sample_grid_draws_each_record_with_its_caption_band(tmp_path):
    from feedstock.cli.contact_sheet import BAND, TILE, sample_grid
    from feedstock.loaders import ArraySource

    source = ArraySource(data=np.zeros((4, 1, 8, 8), np.uint8), label=np.array([0, 1, 2, 1]))
    path = sample_grid(source, tmp_path / "g.png", count=4, class_names=["a", "b", "c"])
    sheet = cv2.imread(path)
    assert sheet.shape[:2] == (2 * (TILE + BAND + 4) + 4, 2 * (TILE + 4) + 4)

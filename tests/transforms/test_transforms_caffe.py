"""CaffeTransform against Caffe's DataTransformer semantics (docs/caffe-compat.md, notes 7, 8, 9, 16)."""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from feedstock.caffe_pb import write_mean_file
from feedstock.rng import sample_rng
from feedstock.spec import ArraySpec
from feedstock.transforms import CaffeTransform, Compose, Resize


class ScriptedRng:
    """Stands in for np.random.Generator: returns scripted integers and records each call's bounds."""

    def __init__(self, *values: int):
        self.values = list(values)
        self.calls: list = []

    def integers(self, low, high=None, size=None, dtype=None):
        self.calls.append((low, high))
        return self.values.pop(0)


def caffe_reference(x, *, crop, h_off, w_off, mirror, mean=None, values=None, scale=1.0):
    """data_transformer.cpp's loop, element by element, in float32."""
    c_n, height, width = x.shape
    size = crop or height
    size_w = crop or width
    out = np.empty((c_n, size, size_w), np.float32)
    for c in range(c_n):
        for h in range(size):
            for w in range(size_w):
                top_w = size_w - 1 - w if mirror else w
                v = np.float32(x[c, h_off + h, w_off + w])
                if mean is not None:
                    v = np.float32(v - np.float32(mean[c, h_off + h, w_off + w]))
                elif values is not None:
                    v = np.float32(v - np.float32(values[c] if len(values) > 1 else values[0]))
                out[c, h, top_w] = np.float32(v * np.float32(scale))
    return out


def test_test_phase_centres_with_floor_division_and_odd_margin():
    x = np.arange(5 * 6, dtype=np.uint8).reshape(1, 5, 6)  # H-crop = 3 -> offset 1; W-crop = 4 -> 2
    t = CaffeTransform(phase="TEST", crop_size=2)
    out = t({"data": x}, ScriptedRng())["data"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[8, 9], [14, 15]]])


def test_mean_file_is_indexed_at_the_crop_offset_and_scale_comes_after_mean(tmp_path):
    x = np.full((1, 4, 4), 100, np.uint8)
    mean = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    write_mean_file(tmp_path / "mean.binaryproto", mean)
    t = CaffeTransform(phase="TRAIN", crop_size=2, scale=0.5, mean_file=tmp_path / "mean.binaryproto")
    rng = ScriptedRng(1, 2)  # h_off=1, w_off=2 (no mirror draw: mirror is off)
    out = t({"data": x}, rng)["data"]
    # (100 - mean[1+h, 2+w]) * 0.5 with mean rows [6, 7] and [10, 11]
    np.testing.assert_array_equal(out, [[[47.0, 46.5], [45.0, 44.5]]])
    assert rng.calls == [(0, 3), (0, 3)]


def test_mirror_places_pixels_flipped_but_takes_the_mean_from_the_unflipped_source(tmp_path):
    x = np.array([[[10, 20, 30, 40]]], np.uint8)  # (1, 1, 4)
    mean = np.array([[[1, 2, 3, 4]]], np.float32)
    t = CaffeTransform(phase="TRAIN", crop_size=0, mirror=True, mean_image=mean)
    out = t({"data": x}, ScriptedRng(1))["data"]
    # destination w' = 3 - w receives x[w] - mean[w]
    np.testing.assert_array_equal(out, [[[36, 27, 18, 9]]])


def test_draw_order_is_mirror_then_h_off_then_w_off():
    x = np.arange(2 * 5 * 7, dtype=np.uint8).reshape(2, 5, 7)
    rng = ScriptedRng(1, 2, 3)
    t = CaffeTransform(phase="TRAIN", crop_size=3, mirror=True)
    out = t({"data": x}, rng)["data"]
    assert rng.calls == [(0, 2), (0, 3), (0, 5)]
    np.testing.assert_array_equal(out, x[:, 2:5, 3:6][:, :, ::-1].astype(np.float32))


def test_mirror_is_not_gated_on_phase_and_test_draws_only_the_mirror():
    x = np.arange(1 * 4 * 4, dtype=np.uint8).reshape(1, 4, 4)
    rng = ScriptedRng(1)
    out = CaffeTransform(phase="TEST", crop_size=2, mirror=True)({"data": x}, rng)["data"]
    assert rng.calls == [(0, 2)]
    np.testing.assert_array_equal(out, [[[6, 5], [10, 9]]])


def test_one_mean_value_is_broadcast_and_per_channel_values_apply_per_channel():
    x = np.zeros((3, 1, 1), np.uint8)
    one = CaffeTransform(phase="TEST", mean_value=104)({"data": x}, ScriptedRng())["data"]
    per = CaffeTransform(phase="TEST", mean_value=[104, 117, 123])({"data": x}, ScriptedRng())["data"]
    np.testing.assert_array_equal(one.ravel(), [-104, -104, -104])  # no uint8 wrap-around (152)
    np.testing.assert_array_equal(per.ravel(), [-104, -117, -123])


def test_matches_the_element_loop_reference_on_random_inputs(tmp_path):
    g = np.random.default_rng(7)
    x = g.integers(0, 256, (3, 9, 11), dtype=np.uint8)
    mean = (g.random((3, 9, 11)) * 255).astype(np.float32)
    cases = [
        (dict(mean_image=mean, scale=0.017), dict(mean=mean, scale=0.017)),
        (dict(mean_value=[104.5, 117, 123.25], scale=0.5), dict(values=[104.5, 117, 123.25], scale=0.5)),
        (dict(mean_value=[99.9]), dict(values=[99.9])),
        (dict(scale=1 / 255), dict(scale=1 / 255)),
    ]
    for kwargs, ref_kwargs in cases:
        t = CaffeTransform(phase="TRAIN", crop_size=5, mirror=True, **kwargs)
        for draws in [(1, 4, 0), (0, 0, 6), (1, 2, 3)]:
            got = t({"data": x}, ScriptedRng(*draws))["data"]
            ref = caffe_reference(x, crop=5, h_off=draws[1], w_off=draws[2], mirror=bool(draws[0]), **ref_kwargs)
            np.testing.assert_array_equal(got, ref)


def test_float_input_is_computed_in_float32():
    x = np.array([[[0.1, 0.7]]], np.float64)
    out = CaffeTransform(phase="TEST", scale=0.3, mean_value=0.2)({"data": x}, ScriptedRng())["data"]
    f32 = np.float32
    expected = [(f32(0.1) - f32(0.2)) * f32(0.3), (f32(0.7) - f32(0.2)) * f32(0.3)]
    np.testing.assert_array_equal(out.ravel(), np.array(expected, np.float32))


@pytest.mark.parametrize("layout", ["chw", "hwc_view", "reversed", "float"])
@pytest.mark.parametrize("mean_kind", ["none", "values", "one_value", "file"])
def test_into_equals_call_bit_for_bit(layout, mean_kind):
    g = np.random.default_rng(3)
    hwc = g.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    x = {"chw": np.ascontiguousarray(hwc.transpose(2, 0, 1)), "hwc_view": hwc.transpose(2, 0, 1),
         "reversed": hwc.transpose(2, 0, 1)[:, :, ::-1],
         "float": hwc.transpose(2, 0, 1).astype(np.float32) / 3}[layout]
    mean = {"none": {}, "values": {"mean_value": [104, 117.5, 123]}, "one_value": {"mean_value": 128},
            "file": {"mean_image": (g.random((3, 20, 24)) * 255).astype(np.float32)}}[mean_kind]
    t = CaffeTransform(phase="TRAIN", crop_size=16, mirror=True, scale=0.017, **mean)
    for index in range(6):
        called = t({"data": x, "label": np.int64(index)}, sample_rng(5, 0, index))
        rows = {"data": np.full((3, 16, 16), np.nan, np.float32), "label": np.zeros((), np.int64)}
        t.into({"data": x, "label": np.int64(index)}, sample_rng(5, 0, index), rows)
        assert rows["data"].tobytes() == called["data"].tobytes()
        assert rows["label"] == index


def test_every_memory_layout_gives_the_same_pixels():
    hwc = np.random.default_rng(8).integers(0, 256, (12, 14, 3), dtype=np.uint8)
    layouts = [np.ascontiguousarray(hwc.transpose(2, 0, 1)), hwc.transpose(2, 0, 1),
               np.asfortranarray(hwc.transpose(2, 0, 1)), hwc[:, ::-1].transpose(2, 0, 1)[:, :, ::-1]]
    t = CaffeTransform(phase="TRAIN", crop_size=9, mirror=True, mean_value=[10, 20, 30], scale=0.25)
    for draws in [(0, 1, 2), (1, 3, 5)]:
        ref = caffe_reference(layouts[0], crop=9, h_off=draws[1], w_off=draws[2], mirror=bool(draws[0]),
                              values=[10, 20, 30], scale=0.25)
        for x in layouts:
            np.testing.assert_array_equal(t({"data": x}, ScriptedRng(*draws))["data"], ref)


def test_compose_into_uses_the_fused_tail_and_matches_call():
    g = np.random.default_rng(4)
    x = g.integers(0, 256, (3, 40, 50), dtype=np.uint8)
    pipe = Compose([Resize(32, 32), CaffeTransform(phase="TRAIN", crop_size=28, mirror=True, mean_value=120)])
    rows = {"data": np.empty((3, 28, 28), np.float32)}
    pipe.into({"data": x}, sample_rng(1, 2, 3), rows)
    np.testing.assert_array_equal(rows["data"], pipe({"data": x}, sample_rng(1, 2, 3))["data"])


def test_into_falls_back_to_a_checked_copy_for_other_row_dtypes():
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    t = CaffeTransform(phase="TEST", crop_size=2, scale=2)
    rows = {"data": np.zeros((2, 2, 2), np.float64)}
    t.into({"data": x}, ScriptedRng(), rows)
    np.testing.assert_array_equal(rows["data"], 2 * x[:, 1:3, 1:3])
    with pytest.raises(ValueError, match="shape"):
        t.into({"data": x}, ScriptedRng(), {"data": np.zeros((2, 3, 3), np.float32)})


def test_same_seed_and_index_reproduce_and_another_seed_differs():
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    t = CaffeTransform(phase="TRAIN", crop_size=40, mirror=True, mean_value=[1, 2, 3])
    a = [t({"data": x}, sample_rng(11, 0, i))["data"] for i in range(5)]
    b = [t({"data": x}, sample_rng(11, 0, i))["data"] for i in range(5)]
    c = [t({"data": x}, sample_rng(12, 0, i))["data"] for i in range(5)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


def test_train_offsets_reach_both_ends_of_the_range():
    x = np.arange(4 * 4, dtype=np.uint8).reshape(1, 4, 4)
    t = CaffeTransform(phase="TRAIN", crop_size=3)
    corners = {float(t({"data": x}, sample_rng(0, 0, i))["data"][0, 0, 0]) for i in range(200)}
    assert corners == {0.0, 1.0, 4.0, 5.0}  # h_off, w_off each in {0, 1}


def test_mask_gets_the_same_crop_and_mirror():
    x = np.arange(1 * 6 * 6, dtype=np.uint8).reshape(1, 6, 6)
    mask = ((x.astype(np.int64) * 7) % 256).astype(np.uint8)
    t = CaffeTransform(phase="TRAIN", crop_size=4, mirror=True)
    out = t({"data": x, "mask": mask}, ScriptedRng(1, 2, 1))
    np.testing.assert_array_equal(out["mask"], mask[:, 2:6, 1:5][:, :, ::-1])
    rows = {"data": np.empty((1, 4, 4), np.float32), "mask": np.empty((1, 4, 4), np.uint8)}
    t.into({"data": x, "mask": mask}, ScriptedRng(1, 2, 1), rows)
    np.testing.assert_array_equal(rows["mask"], out["mask"])


@pytest.mark.parametrize("flag, channels", [("force_color", 1), ("force_gray", 3), ("force_color", 4),
                                            ("force_gray", 2)])
def test_force_flags_leave_raw_images_as_stored(flag, channels, caplog):
    """Caffe's Transform(Datum) on a raw Datum: LOG(ERROR) and the stored channels (docs/caffe-compat.md, note 6)."""
    x = np.random.default_rng(channels).integers(0, 256, (channels, 5, 6), dtype=np.uint8)
    t = CaffeTransform(phase="TEST", scale=0.5, mean_value=7, **{flag: True})
    with caplog.at_level("ERROR", logger="feedstock.transforms.caffe"):
        outs = [t({"data": x}, ScriptedRng())["data"] for _ in range(3)]
        rows = {"data": np.empty((channels, 5, 6), np.float32)}
        t.into({"data": x}, ScriptedRng(), rows)
    expected = (x.astype(np.float32) - 7) * np.float32(0.5)
    for out in outs + [rows["data"]]:
        np.testing.assert_array_equal(out, expected)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and flag in errors[0] and "encoded" in errors[0]  # once, not per image


def test_force_flags_matching_channels_log_nothing(caplog):
    with caplog.at_level("ERROR", logger="feedstock.transforms.caffe"):
        CaffeTransform(phase="TEST", force_gray=True)({"data": np.zeros((1, 2, 2), np.uint8)}, ScriptedRng())
        CaffeTransform(phase="TEST", force_color=True)({"data": np.zeros((3, 2, 2), np.uint8)}, ScriptedRng())
    assert caplog.records == []


def test_force_flags_choose_the_decode_of_encoded_datums():
    t = CaffeTransform(phase="TEST", force_gray=True)
    assert (t.imread_flag, t.decode_mode) == (cv2.IMREAD_GRAYSCALE, "gray")
    plain = CaffeTransform(phase="TEST")
    assert (plain.imread_flag, plain.decode_mode) == (cv2.IMREAD_UNCHANGED, "native")
    color = CaffeTransform(phase=0, force_color=True)
    assert (color.imread_flag, color.decode_mode) == (cv2.IMREAD_COLOR, "color")


def test_force_gray_through_a_loader_raw_vs_encoded_lmdb(tmp_path, no_leaks):
    """Raw Datums keep 3 channels; encoded ones decode grey with the transform's decode_mode."""
    from feedstock.fixtures.synthetic import make_encoded_lmdb, make_raw_lmdb
    from feedstock.loaders import CaffeLmdb
    from feedstock.pipeline.loader import Loader

    def one_batch(source, transform):
        with Loader(source, [transform], batch_size=4, workers=0, shuffle=False, drop_last=True) as loader:
            return list(loader)

    t = CaffeTransform(phase="TEST", force_gray=True)
    images, _ = make_raw_lmdb(str(tmp_path / "raw"), np.random.default_rng(5), 4, (3, 6, 7))
    (batch,) = one_batch(CaffeLmdb(str(tmp_path / "raw"), mode=t.decode_mode), t)
    np.testing.assert_array_equal(batch["data"], images.astype(np.float32))
    hwc = [np.ascontiguousarray(im.transpose(1, 2, 0)) for im in images]
    payloads = make_encoded_lmdb(str(tmp_path / "enc"), hwc, [0, 1, 2, 3])
    (batch,) = one_batch(CaffeLmdb(str(tmp_path / "enc"), mode=t.decode_mode), t)
    gray = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_GRAYSCALE) for p in payloads]
    np.testing.assert_array_equal(batch["data"], np.stack(gray)[:, None].astype(np.float32))


def test_output_spec():
    t = CaffeTransform(phase="TRAIN", crop_size=227, force_gray=True)  # decoding's business, not ours
    spec = t.output_spec({"data": ArraySpec((3, None, None), np.uint8), "label": ArraySpec((), np.int64)})
    assert spec["data"] == ArraySpec((3, 227, 227), np.float32)
    assert spec["label"] == ArraySpec((), np.int64)
    full = CaffeTransform(phase="TEST").output_spec({"data": ArraySpec((3, 32, 30), np.uint8)})
    assert full["data"] == ArraySpec((3, 32, 30), np.float32)


def test_pickles_for_the_workers():
    t = CaffeTransform(phase="TRAIN", crop_size=4, mirror=True, mean_value=[1, 2, 3])
    x = np.random.default_rng(2).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    t({"data": x}, sample_rng(0, 0, 0))  # warm the caches before pickling
    u = pickle.loads(pickle.dumps(t))
    np.testing.assert_array_equal(u({"data": x}, sample_rng(0, 0, 1))["data"],
                                  t({"data": x}, sample_rng(0, 0, 1))["data"])


@pytest.mark.parametrize("kwargs, words", [
    (dict(phase="VALIDATE"), ["phase", "VALIDATE"]),
    (dict(phase="TRAIN", crop_size=-1), ["crop_size", "-1"]),
    (dict(phase="TRAIN", scale=float("inf")), ["scale", "inf"]),
    (dict(phase="TRAIN", mirror="yes"), ["mirror", "yes"]),
    (dict(phase="TRAIN", mean_file="m.binaryproto", mean_value=[104]), ["mean_file", "mean_value"]),
    (dict(phase="TRAIN", force_color=True, force_gray=True), ["force_color", "force_gray"]),
    (dict(phase="TRAIN", mean_value=["a"]), ["mean_value"]),
])
def test_bad_parameters_raise_value_error_naming_them(kwargs, words):
    with pytest.raises(ValueError) as e:
        CaffeTransform(**kwargs)
    for w in words:
        assert w in str(e.value)


def test_bad_inputs_raise_clear_errors(tmp_path):
    x = np.zeros((3, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"crop_size=\(9, 9\) is larger than the image \(8x8\)"):
        CaffeTransform(phase="TEST", crop_size=9)({"data": x}, ScriptedRng())
    with pytest.raises(ValueError, match=r"mean_value has 2 entries.*expected 1 or 3"):
        CaffeTransform(phase="TEST", mean_value=[1, 2])({"data": x}, ScriptedRng())
    write_mean_file(tmp_path / "m.binaryproto", np.zeros((3, 10, 10), np.float32))
    t = CaffeTransform(phase="TEST", crop_size=4, mean_file=tmp_path / "m.binaryproto")
    with pytest.raises(ValueError, match=r"mean_file=.*\(3, 10, 10\).*uncropped input.*\(3, 8, 8\)"):
        t({"data": x}, ScriptedRng())
    with pytest.raises(ValueError, match="crop_size=9"):
        CaffeTransform(phase="TEST", crop_size=9).output_spec({"data": ArraySpec((3, 8, 8), np.uint8)})
    with pytest.raises(ValueError, match="unknown transform_param field.*'crop'"):
        CaffeTransform.from_param({"crop": 3}, "TRAIN")


def test_a_real_decoded_photo_matches_plain_numpy(shared_data):
    hwc = cv2.imread(str(shared_data / "photos" / "cat.jpg"), cv2.IMREAD_COLOR)
    x = cv2.resize(hwc, (256, 256)).transpose(2, 0, 1)  # what an ImageData source hands out
    t = CaffeTransform(phase="TRAIN", crop_size=227, mirror=True, mean_value=[104, 117, 123], scale=0.017)
    for index in range(4):
        rng = sample_rng(0, 0, index)
        got = t({"data": x}, rng)["data"]
        g = sample_rng(0, 0, index)
        flip, top, left = g.integers(0, 2), g.integers(0, 30), g.integers(0, 30)
        ref = x.astype(np.float32)[:, top : top + 227, left : left + 227]
        ref = ref[:, :, ::-1] if flip else ref
        ref = (ref - np.array([104, 117, 123], np.float32)[:, None, None]) * np.float32(0.017)
        assert got.tobytes() == ref.tobytes()


# ----- apply_batch: the Loader's batch fast path --------------------------------------------------
def _rows_of(t, batch, index0=0):
    """The per-row results (``into`` a float32 row, and ``__call__``) stacked, with per-sample rngs."""
    n = len(batch["data"])
    spec = t.output_spec({"data": ArraySpec(batch["data"].shape[1:], batch["data"].dtype)})["data"]
    into = np.full((n, *spec.shape), np.nan, np.float32)
    called = []
    for j in range(n):
        sample = {name: value[j] for name, value in batch.items()}
        t.into(sample, sample_rng(2, 0, index0 + j), {"data": into[j]})
        called.append(t(sample, sample_rng(2, 0, index0 + j)))
    return into, {name: np.stack([c[name] for c in called]) for name in called[0]}


@pytest.mark.parametrize("dtype", [np.uint8, np.float64, np.int16])
@pytest.mark.parametrize("kwargs", [
    dict(phase="TRAIN", scale=0.00390625),
    dict(phase="TRAIN", mean_value=[104.5, 117, 123.25], scale=0.017),
    dict(phase="TRAIN", mean_value=99.9),
    dict(phase="TEST", crop_size=5, mean_value=[1.5, 2, 3], scale=0.5),
    dict(phase="TEST", crop_size=6, mean_image="random", scale=0.017),
    dict(phase="TEST", crop_size=7, force_color=True),
    dict(phase="TEST", crop_size=7, force_gray=True),  # raw images keep their channels, as in Caffe
    dict(phase="TRAIN", mean_image="random"),
])
def test_apply_batch_equals_the_rows_bit_for_bit(kwargs, dtype):
    g = np.random.default_rng(11)
    x = g.integers(0, 256, (6, 3, 9, 10)).astype(dtype)
    if dtype == np.float64:
        x = x + g.random(x.shape)
    if kwargs.get("mean_image") == "random":
        kwargs = dict(kwargs, mean_image=(g.random((3, 9, 10)) * 255).astype(np.float32))
    t = CaffeTransform(**kwargs)
    batch = {"data": x, "label": np.arange(6, dtype=np.int64)}
    got = t.apply_batch(batch)
    into, called = _rows_of(t, batch)
    assert got["data"].dtype == np.float32 and got["data"].tobytes() == into.tobytes()
    assert got["data"].tobytes() == called["data"].tobytes()
    assert got["label"].tolist() == list(range(6))
    assert got is not batch and batch["data"] is x  # the input fields are left alone


def test_apply_batch_matches_caffe_on_a_test_centre_crop(tmp_path):
    x = np.random.default_rng(12).integers(0, 256, (2, 2, 7, 8), dtype=np.uint8)
    mean = np.arange(2 * 7 * 8, dtype=np.float32).reshape(2, 7, 8) / 3
    write_mean_file(tmp_path / "mean.binaryproto", mean)
    t = CaffeTransform(phase="TEST", crop_size=4, scale=0.25, mean_file=tmp_path / "mean.binaryproto")
    got = t.apply_batch({"data": x})["data"]
    for j in range(2):  # offsets (7 - 4) // 2 = 1 and (8 - 4) // 2 = 2
        ref = caffe_reference(x[j], crop=4, h_off=1, w_off=2, mirror=False, mean=mean, scale=0.25)
        np.testing.assert_array_equal(got[j], ref)


def test_apply_batch_crops_the_mask_like_the_rows():
    g = np.random.default_rng(13)
    batch = {"data": g.integers(0, 256, (3, 1, 6, 6), dtype=np.uint8),
             "mask": g.integers(0, 5, (3, 1, 6, 6), dtype=np.uint8)}
    t = CaffeTransform(phase="TEST", crop_size=3)
    got = t.apply_batch(batch)
    _, called = _rows_of(t, batch)
    np.testing.assert_array_equal(got["mask"], called["mask"])
    np.testing.assert_array_equal(got["mask"], batch["mask"][:, :, 1:4, 1:4])


@pytest.mark.parametrize("kwargs, shape", [
    (dict(phase="TRAIN", mirror=True), (2, 3, 8, 8)),  # a coin per row
    (dict(phase="TEST", mirror=True), (2, 3, 8, 8)),  # the mirror is drawn in TEST too
    (dict(phase="TRAIN", crop_size=4), (2, 3, 8, 8)),  # random offsets per row
    (dict(phase="TEST", crop_size=9), (2, 3, 8, 8)),  # rejected per row, naming the record
    (dict(phase="TEST", mean_value=[1, 2]), (2, 3, 8, 8)),
    (dict(phase="TEST", mean_image=np.zeros((3, 7, 8), np.float32)), (2, 3, 8, 8)),
    (dict(phase="TEST"), (2, 8, 8)),  # not a batch of CHW images
])
def test_apply_batch_declines_what_only_rows_can_do(kwargs, shape):
    batch = {"data": np.zeros(shape, np.uint8), "label": np.zeros(2, np.int64)}
    assert CaffeTransform(**kwargs).apply_batch(batch) is NotImplemented

"""Saving a fit to netCDF and loading it back loses nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import arviz as az
import h5py
import numpy as np
import pandas as pd
import pytest

import lmmhmc
from lmmhmc.errors import LmmhmcError
from lmmhmc.io import METADATA


def _round_trip(result, path: Path):
    result.save(path)
    assert path.stat().st_size > 0
    return lmmhmc.load(path)


def _assert_same_design(a, b) -> None:
    assert a.formula == b.formula and a.response == b.response and a.x_names == b.x_names
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.X, b.X)
    assert (a.weights is None) == (b.weights is None)
    if a.weights is not None:
        np.testing.assert_array_equal(a.weights, b.weights)
    assert a.n_dropped == b.n_dropped
    for s, t in zip(a.terms, b.terms, strict=True):
        assert (s.text, s.factor, s.columns, s.correlated) == (t.text, t.factor, t.columns,
                                                               t.correlated)
        np.testing.assert_array_equal(s.levels, t.levels)
        np.testing.assert_array_equal(s.index, t.index)
        np.testing.assert_array_equal(s.block, t.block)


def test_round_trip_reproduces_summary_and_predictions(sleepstudy_fit, tmp_path: Path) -> None:
    loaded = _round_trip(sleepstudy_fit, tmp_path / "fit.nc")
    pd.testing.assert_frame_equal(loaded.summary(), sleepstudy_fit.summary(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.summary(random_effects=True),
                                  sleepstudy_fit.summary(random_effects=True), check_exact=True)
    for method in ("fixef", "ranef", "varcorr"):
        pd.testing.assert_frame_equal(getattr(loaded, method)(), getattr(sleepstudy_fit, method)(),
                                      check_exact=True)
    assert loaded.header() == sleepstudy_fit.header()
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0], "Subject": ["308", "new", "372"]})
    for kwargs in ({}, {"kind": "response", "seed": 4}):
        np.testing.assert_array_equal(loaded.predict(new, **kwargs),
                                      sleepstudy_fit.predict(new, **kwargs))
    np.testing.assert_array_equal(loaded.predict(), sleepstudy_fit.predict())
    _assert_same_design(loaded.design, sleepstudy_fit.design)
    assert loaded.plan == sleepstudy_fit.plan
    assert loaded.settings == sleepstudy_fit.settings
    assert loaded.timings == sleepstudy_fit.timings
    assert repr(loaded.priors) == repr(sleepstudy_fit.priors)
    pd.testing.assert_series_equal(loaded.ml.beta, sleepstudy_fit.ml.beta)
    assert loaded.idata.groups() == sleepstudy_fit.idata.groups()
    pd.testing.assert_frame_equal(loaded.model.data, sleepstudy_fit.model.data)


def test_round_trip_of_encodings_and_transforms(crossed_fit, tmp_path: Path) -> None:
    loaded = _round_trip(crossed_fit, tmp_path / "crossed.nc")
    _assert_same_design(loaded.design, crossed_fit.design)
    new = pd.DataFrame({"x": [0.5, 2.0], "cond": ["b", "a"], "subj": ["s01", "s77"],
                        "item": ["i77", "i03"]})
    np.testing.assert_array_equal(loaded.predict(new, seed=2), crossed_fit.predict(new, seed=2))
    pd.testing.assert_frame_equal(loaded.summary(), crossed_fit.summary(), check_exact=True)


def test_round_trip_keeps_weights_and_dropped_rows(sleepstudy_fit, tmp_path: Path) -> None:
    # the same posterior, attached to a model with a weights column and two incomplete rows
    data = sleepstudy_fit.model.data
    extra = pd.DataFrame({"Reaction": [np.nan, 250.0], "Days": [1, np.nan],
                          "Subject": [308, 309]})
    data = pd.concat([data, extra], ignore_index=True)
    data["w"] = np.linspace(0.5, 2.0, len(data))
    with pytest.warns(UserWarning, match="2 rows have missing values"):
        model = lmmhmc.Model(sleepstudy_fit.design.formula, data, weights="w")
    weighted = dataclasses.replace(sleepstudy_fit, model=model)
    loaded = _round_trip(weighted, tmp_path / "weighted.nc")
    assert loaded.design.n_dropped == 2
    _assert_same_design(loaded.design, weighted.design)
    np.testing.assert_array_equal(loaded.predict(kind="response"),
                                  weighted.predict(kind="response"))
    # weights given as an array
    model = lmmhmc.Model(sleepstudy_fit.design.formula, sleepstudy_fit.model.data,
                         weights=np.linspace(1.0, 3.0, 180))
    loaded = _round_trip(dataclasses.replace(sleepstudy_fit, model=model), tmp_path / "w.nc")
    np.testing.assert_array_equal(loaded.design.weights, np.linspace(1.0, 3.0, 180))


def test_file_is_plain_arviz_netcdf(sleepstudy_fit, tmp_path: Path) -> None:
    path = tmp_path / "fit.nc"
    sleepstudy_fit.save(path)
    idata = az.from_netcdf(path)
    assert set(idata.groups()) == set(sleepstudy_fit.idata.groups())
    np.testing.assert_array_equal(idata.posterior["Days"].values,
                                  sleepstudy_fit.idata.posterior["Days"].values)


def test_load_errors(sleepstudy_fit, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="file '.*missing.nc' not found"):
        lmmhmc.load(tmp_path / "missing.nc")
    plain = tmp_path / "plain.nc"
    sleepstudy_fit.idata.to_netcdf(str(plain))
    with pytest.raises(LmmhmcError, match=f"was not written by lmmhmc .*{METADATA}"):
        lmmhmc.load(plain)
    newer = tmp_path / "newer.nc"
    sleepstudy_fit.save(newer)
    with h5py.File(newer, "a") as f:
        f[METADATA].attrs["format"] = 99
    with pytest.raises(LmmhmcError, match="written by a newer lmmhmc .*; upgrade"):
        lmmhmc.load(newer)
    text = tmp_path / "text.nc"
    text.write_text("not netcdf")
    with pytest.raises(LmmhmcError, match="cannot read .* as an lmmhmc result"):
        lmmhmc.load(text)


def test_a_failed_save_leaves_the_earlier_file_intact(sleepstudy_fit, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fit.nc"
    sleepstudy_fit.save(path)
    before = path.read_bytes()

    def disk_full(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a file")  # the write starts, then fails midway
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(az.InferenceData, "to_netcdf", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sleepstudy_fit.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]  # no temporary file left
    monkeypatch.undo()
    assert lmmhmc.load(path).design.n_obs == sleepstudy_fit.design.n_obs


def test_damaged_or_foreign_files_give_a_clear_error(sleepstudy_fit, tmp_path: Path) -> None:
    good = tmp_path / "good.nc"
    sleepstudy_fit.save(good)
    content = good.read_bytes()
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(content[: len(content) // 2])
    damaged = tmp_path / "damaged.nc"
    rng = np.random.default_rng(0)
    middle = len(content) // 3
    damaged.write_bytes(content[:middle] + rng.bytes(4000) + content[middle + 4000:])
    foreign = tmp_path / "foreign.nc"
    az.from_dict(posterior={"mu": np.zeros((1, 5))}).to_netcdf(str(foreign))
    for path in (truncated, damaged):
        try:
            lmmhmc.load(path)
        except LmmhmcError as exc:
            assert str(exc).startswith(f"cannot read '{path}' as an lmmhmc result")
    with pytest.raises(LmmhmcError, match="cannot read .* damaged, truncated"):
        lmmhmc.load(truncated)
    with pytest.raises(LmmhmcError, match="was not written by lmmhmc"):
        lmmhmc.load(foreign)
    with h5py.File(good, "a") as f:  # metadata that is not a pickle
        del f[METADATA]
        f.create_dataset(METADATA, data=np.frombuffer(b"garbage", np.uint8))
    with pytest.raises(LmmhmcError, match="cannot read .* as an lmmhmc result"):
        lmmhmc.load(good)

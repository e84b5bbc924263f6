"""The Delhi climate data packaged with pyanode: the published files, unchanged, read from the package."""

import hashlib

import pandas as pd
import pytest

import pyanode
from pyanode.datasets import delhi_climate, delhi_climate_files


def test_packaged_files_are_the_published_ones():
    with delhi_climate_files() as (train_csv, test_csv):
        # The md5 sums the provenance note (SOURCE.md beside the files) records.
        assert hashlib.md5(train_csv.read_bytes()).hexdigest() == "535feee0e75149b315294907d65c820f"
        assert hashlib.md5(test_csv.read_bytes()).hexdigest() == "06c26057ac8296ab373bf33894bd2011"
        assert (train_csv.parent / "SOURCE.md").read_text().count("Licence") == 1
        assert pyanode.__file__.rsplit("/", 1)[0] in str(train_csv)  # inside the installed package


def test_frames_as_published():
    train, test = delhi_climate()
    assert list(train.columns) == ["meantemp", "humidity", "wind_speed", "meanpressure"]
    assert train.index.equals(pd.date_range("2013-01-01", "2017-01-01", freq="D", name="date"))
    assert test.index.equals(pd.date_range("2017-01-01", "2017-04-24", freq="D", name="date"))
    # Raw, not cleaned: the known gross pressure error is still there for fit() to mask.
    assert train.loc["2016-03-28", "meanpressure"] == pytest.approx(7679.333333)
    assert train.loc["2013-01-02", "meantemp"] == 7.4

"""Image paths and the file system: symbolic links leaving the image root, directories given as images."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from fluid.data import (
    BadImageError, BadRowError, CatalogueDataset, load_image, normalize_frame, read_table,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt",
                                reason="needs POSIX symbolic links")

PASSWD = Path("/etc/passwd")


@pytest.fixture
def cases(tmp_path, make_jpeg) -> Path:
    """``cases/`` is the image root; ``outside/`` lies beside it.

    cases/images/real.jpg                       a plain image
    cases/images/link.jpg   -> outside/secret.jpg   leaves the root
    cases/images/alias.jpg  -> images/real.jpg      stays inside (relative link)
    cases/images/abs-alias.jpg -> <abs>/cases/images/real.jpg   stays inside (absolute link)
    cases/images/passwd.jpg -> /etc/passwd
    cases/images/dangling.jpg -> outside/nothing.jpg    leaves the root, target missing
    cases/images/sub/                            a directory
    cases/gallery -> images                      a directory link inside the root
    cases/escape  -> outside/                    a directory link leaving the root
    """
    root = tmp_path / "cases"
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (images / "real.jpg").write_bytes(make_jpeg((0, 200, 0)))
    (outside / "secret.jpg").write_bytes(make_jpeg((250, 0, 0), size=(20, 10)))
    (images / "link.jpg").symlink_to(outside / "secret.jpg")
    (images / "alias.jpg").symlink_to("real.jpg")
    (images / "abs-alias.jpg").symlink_to(images / "real.jpg")
    (images / "passwd.jpg").symlink_to(PASSWD)
    (images / "dangling.jpg").symlink_to(outside / "nothing.jpg")
    (root / "gallery").symlink_to("images", target_is_directory=True)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    return root


# --------------------------------------------------------------------------------------------------------
# load_image


@pytest.mark.parametrize("cell", ["images/link.jpg", "images\\link.jpg", "escape/secret.jpg",
                                  "images/dangling.jpg"])
def test_load_image_refuses_links_leaving_the_root(cases, cell):
    with pytest.raises(BadImageError) as e:
        load_image(cell, image_root=cases)
    assert e.value.kind == "outside root", e.value
    assert "leaves the image root" in e.value.reason and cell in str(e.value)


def test_load_image_refuses_a_link_to_etc_passwd(cases):
    for cell in ("images/passwd.jpg", str(cases / "images" / "passwd.jpg")):
        with pytest.raises(BadImageError) as e:
            load_image(cell, image_root=cases)
        assert e.value.kind == "outside root" and "leaves the image root" in e.value.reason, e.value


def test_load_image_follows_links_that_stay_inside(cases):
    for cell in ("images/alias.jpg", "images/abs-alias.jpg", "gallery/real.jpg", "gallery/alias.jpg",
                 str(cases / "images" / "alias.jpg")):
        assert load_image(cell, image_root=cases).getpixel((1, 1))[1] > 150, cell
    # the root itself may be a link (e.g. a data folder on another disk)
    root_link = cases.parent / "root-link"
    root_link.symlink_to(cases, target_is_directory=True)
    assert load_image("images/alias.jpg", image_root=root_link).size == (12, 16)
    assert load_image("images/real.jpg", image_root=root_link).size == (12, 16)
    with pytest.raises(BadImageError, match="leaves the image root"):
        load_image("images/link.jpg", image_root=root_link)


def test_without_a_root_links_are_followed(cases):
    # no image root, no containment: absolute paths are the caller's own (unchanged behaviour)
    assert load_image(cases / "images" / "link.jpg").size == (20, 10)


def test_load_image_directory_is_reported_as_a_directory(cases):
    for cell, root in (("images/sub", cases), ("images", cases), (str(cases / "images"), None)):
        with pytest.raises(BadImageError) as e:
            load_image(cell, image_root=root)
        assert "is a directory" in e.value.reason and e.value.kind != "missing", e.value
    with pytest.raises(BadImageError) as e:
        load_image("images/nope.jpg", image_root=cases)
    assert e.value.kind == "missing" and e.value.reason == "no such file"


# --------------------------------------------------------------------------------------------------------
# readers: the same problems are bad rows, counted in the report


def _catalogue(cases: Path, images: list[str]) -> Path:
    path = cases / "c.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(len(images))], "text": [f"t{i}" for i in range(len(images))],
                  "image": images}).to_csv(path, index=False)
    return path


def test_read_table_counts_links_leaving_the_root_as_outside_root(cases):
    images = ["images/real.jpg", "images/link.jpg", "images/alias.jpg", "images/passwd.jpg", "gallery/real.jpg",
              "escape/secret.jpg", "images/dangling.jpg", "images/sub", "images/missing.jpg"]
    cat = read_table(_catalogue(cases, images), id_col="id")
    frame = cat.frame.set_index("id")
    kept = {i: frame.loc[f"r{i}", "image"] for i in range(len(images))}
    assert kept[0] == str(cases / "images" / "real.jpg")
    assert kept[2] == str(cases / "images" / "alias.jpg")  # the link's own path, inside the root
    assert kept[4] == str(cases / "gallery" / "real.jpg")
    assert all(pd.isna(kept[i]) for i in (1, 3, 5, 6, 7, 8))
    rep = cat.report
    assert rep.count("image-outside-root") == 4 and rep.count("image-missing") == 2
    assert rep.kept_rows == len(images) and rep.dropped_rows == 0  # the text is kept
    outside = {e.id: e.detail for e in rep.examples["image-outside-root"]}
    assert set(outside) == {"r1", "r3", "r5", "r6"}
    assert all("leaves the image root" in d for d in outside.values()), outside
    assert "'images/link.jpg'" in outside["r1"] and "symbolic link" in outside["r1"]
    missing = {e.id: e.detail for e in rep.examples["image-missing"]}
    assert "is a directory" in missing["r7"] and "not found" not in missing["r7"]
    assert "not found" in missing["r8"]
    assert "image-outside-root: 4" in str(rep)
    with pytest.raises(BadRowError, match="image-outside-root.*leaves the image root"):
        read_table(_catalogue(cases, ["images/real.jpg", "images/link.jpg"]), on_bad_row="fail")
    assert len(read_table(_catalogue(cases, images), on_bad_row="skip").frame) == 3


def test_normalize_frame_checks_links_too(cases):
    df = pd.DataFrame({"text": ["a", "b", "c"], "image": ["images/link.jpg", "images/alias.jpg", "images/sub"]})
    cat = normalize_frame(df, image_root=cases)
    assert cat.report.count("image-outside-root") == 1 and cat.report.count("image-missing") == 1
    assert "is a directory" in cat.report.examples["image-missing"][0].detail


def test_unchecked_catalogue_is_checked_when_decoded(cases):
    """check_images=False makes no file-system call at read time; the link is refused when the image is read."""
    cat = read_table(_catalogue(cases, ["images/link.jpg", "images/alias.jpg"]), check_images=False)
    assert cat.report.count("image-outside-root") == 0
    ds = CatalogueDataset(cat)
    first, second = ds[0], ds[1]
    assert first["image"] is None and any("leaves the image root" in p.detail for p in first["problems"]), first
    assert second["image"] is not None and second["problems"] == []

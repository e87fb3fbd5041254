"""A small DataFrame catalogue whose label is decidable from text or image, with every kind of image cell."""

import io

import numpy as np
import pandas as pd
import pytest
from fluid.config import SMOKE_TEST_OVERRIDES
from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
TINY = SMOKE_TEST_OVERRIDES


def _image(colour):
    return Image.new("RGB", (40, 40), COLOURS[colour])


@pytest.fixture(scope="session")
def product_frame(tmp_path_factory):
    """60 products in 3 classes; images as PIL, bytes, relative paths and None; a shuffled, non-default index."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        colour = list(COLOURS)[i % 3]
        kind = i % 4
        image = _image(colour)
        if kind == 1:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            image = buffer.getvalue()
        elif kind == 2:
            image.save(root / f"p{i}.png")
            image = f"p{i}.png"
        elif kind == 3 and i % 8 == 3:
            image = None
        rows.append({"name": f"{colour} shirt number {i}", "description": f"a {colour} cotton item",
                     "category": f"cat-{colour}", "picture": image})
    frame = pd.DataFrame(rows)
    frame.index = rng.permutation(np.arange(1000, 1060))
    return frame, root

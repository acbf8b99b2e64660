"""The course's plot style, and the array conversion the figures share."""

import matplotlib as mpl
import numpy as np
import torch

from emgeo import plotting
from emgeo.plotting.style import as_numpy


def test_set_style_fixes_the_sizes_and_the_svg_ids():
    with mpl.rc_context():
        plotting.set_style()
        assert mpl.rcParams["figure.dpi"] == 80 and mpl.rcParams["svg.hashsalt"] == "emgeo"


def test_as_numpy_takes_tensors_with_grad_and_leaves_arrays_as_they_are():
    values = as_numpy(torch.ones(2, requires_grad=True))
    assert isinstance(values, np.ndarray) and values.tolist() == [1.0, 1.0]
    array = np.zeros(3)
    assert as_numpy(array) is array

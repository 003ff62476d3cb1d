"""Captions readable in every grid: a caption (six attributes of F) and a column title are wrapped to the cell's
width, between attributes, so no text runs into its neighbour's."""

from __future__ import annotations

import pytest
import torch

from magec.visualize import grid_figure, wrap_label

SIX = "male 0.93 age 31 smile 0.10 neutral 0.80 sad 0.02 surprised 0.01"


def test_wrap_label_breaks_between_attributes_only():
    wrapped = wrap_label(SIX, 25)
    assert wrapped.split("\n") == ["male 0.93 age 31", "smile 0.10 neutral 0.80", "sad 0.02 surprised 0.01"]
    assert wrap_label("male 0.93, age 31", 40) == "male 0.93 age 31"
    assert wrap_label("astronaut\nmagec", 25) == "astronaut\nmagec"  # lines already broken stay so


@pytest.mark.slow
def test_no_caption_or_title_overlaps_its_neighbour():
    images = [[torch.zeros(3, 64, 64) for _ in range(5)] for _ in range(2)]
    cells = [[SIX] * 5 for _ in range(2)]
    cols = ["original", "projection", "composite: male -3.0", "composite: male +3.0", "sharp: male +3.0"]
    for cell in (1.3, 1.5, 2.0):  # the sizes the demo, preview and edit grids use
        fig = grid_figure(images, ["a", "b"], cols, cells, title="t", cell=cell)
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        axes = fig.axes
        boxes = [ax.xaxis.label.get_window_extent(renderer) for ax in axes]
        titles = [ax.title.get_window_extent(renderer) for ax in axes[:5]]
        for box in boxes:  # within the cell's width
            assert box.width <= cell * fig.dpi, (cell, box.width)
        for row in (boxes[:5], boxes[5:], titles):
            for left, right in zip(row, row[1:]):
                assert left.x1 <= right.x0, (cell, left, right)  # side by side, never on top of each other
        # without the wrapping the six attributes would not fit: the test looks at the case of the bug
        axes[0].set_xlabel(SIX, fontsize=7)
        fig.canvas.draw()
        assert axes[0].xaxis.label.get_window_extent(renderer).width > 1.5 * cell * fig.dpi

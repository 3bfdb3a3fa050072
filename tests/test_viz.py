"""The debug view: layout, role-coloured outlines, labels, and the alpha panel."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.types import mask_to_xyxy
from pipeline.viz import (
    MAX_LEGEND_ITEMS,
    ROLE_COLOURS,
    DebugItem,
    debug_layout,
    debug_view,
    label_text,
)


def noise_image(h: int, w: int) -> np.ndarray:
    # values 40..200: never equal to a saturated role colour by accident
    return np.random.default_rng(1).integers(40, 200, size=(h, w, 3), dtype=np.uint8)


def rect_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def item(rank: int, role: str, mask: np.ndarray) -> DebugItem:
    return DebugItem(
        rank=rank,
        label="person",
        role=role,
        score=0.5,
        mask=mask,
        xyxy=mask_to_xyxy(mask),
        top_features=(("sharpness", 0.8), ("area_frac", 0.2)),
        reason="because",
    )


def test_tall_image_side_by_side_shape():
    h, w = 240, 160
    view = debug_view(noise_image(h, w), [], np.zeros((h, w), np.float32))
    layout = debug_layout(h, w, 0)
    assert view.shape == (layout.height, layout.width, 3) and view.dtype == np.uint8
    assert layout.width == 2 * w and layout.alpha_yx == (0, w) and layout.legend_y == h
    assert layout.height > h  # the legend strip


def test_very_wide_image_alpha_below():
    h, w = 60, 240
    layout = debug_layout(h, w, 0)
    assert layout.width == w and layout.alpha_yx == (h, 0) and layout.legend_y == 2 * h
    view = debug_view(noise_image(h, w), [], np.ones((h, w), np.float32))
    assert view.shape == (layout.height, w, 3)


def test_legend_grows_with_items_up_to_a_cap():
    heights = [debug_layout(300, 200, n).height for n in (0, 1, 2, MAX_LEGEND_ITEMS + 1, 50)]
    assert heights[0] < heights[1] < heights[2] < heights[3]
    assert heights[3] == heights[4]


def test_line_and_font_scale_with_image_size():
    small, large = debug_layout(400, 300, 1), debug_layout(4000, 3000, 1)
    assert small.line_px == 1 and large.line_px == 10
    assert large.font_px >= 5 * small.font_px


def test_outline_pixels_take_the_role_colour_and_the_rest_is_the_photo():
    h, w = 200, 300
    image = noise_image(h, w)
    main = rect_mask(h, w, 60, 180, 20, 120)
    dropped = rect_mask(h, w, 80, 190, 180, 280)
    view = debug_view(
        image, [item(1, "main", main), item(2, "dropped", dropped)], np.zeros((h, w), np.float32)
    )
    line_px = debug_layout(h, w, 2).line_px
    # bottom and left edges: far from the labels, which sit at the boxes' top-left
    assert (view[179, 30:110] == ROLE_COLOURS["main"]).all()
    assert (view[100:170, 20] == ROLE_COLOURS["main"]).all()
    assert (view[189, 190:270] == ROLE_COLOURS["dropped"]).all()
    assert (view[100:180, 279] == ROLE_COLOURS["dropped"]).all()
    # just outside and just inside the band, the photo is untouched
    np.testing.assert_array_equal(view[180, 30:110], image[180, 30:110])
    np.testing.assert_array_equal(view[179 - line_px, 30:110], image[179 - line_px, 30:110])
    np.testing.assert_array_equal(view[100:170, 60:100], image[100:170, 60:100])


def test_outline_is_line_px_thick_on_a_larger_image():
    h, w = 1600, 1200
    layout = debug_layout(h, w, 1)
    assert layout.line_px == 4
    mask = rect_mask(h, w, 400, 1400, 300, 900)
    view = debug_view(
        noise_image(h, w), [item(1, "interacting", mask)], np.zeros((h, w), np.float32)
    )
    column = view[1300:1400, 600]
    is_cyan = (column == ROLE_COLOURS["interacting"]).all(axis=1)
    assert is_cyan.sum() == layout.line_px and is_cyan[-layout.line_px :].all()


def test_label_tag_in_role_colour_above_the_box():
    h, w = 200, 300
    mask = rect_mask(h, w, 100, 180, 50, 150)
    view = debug_view(noise_image(h, w), [item(3, "kept", mask)], np.zeros((h, w), np.float32))
    tag = view[80:100, 50:150]  # the rows just above the box
    share = (tag == ROLE_COLOURS["kept"]).all(axis=2).mean()
    assert share > 0.3  # the filled tag, with dark text on it
    assert ((tag == 0).all(axis=2)).any()  # the text


def test_alpha_panel_equals_the_alpha():
    h, w = 120, 90
    alpha = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    alpha[:10] = 0.5
    view = debug_view(noise_image(h, w), [item(1, "main", rect_mask(h, w, 20, 100, 10, 80))], alpha)
    panel = view[:h, w : 2 * w]
    expected = np.rint(alpha * 255).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(panel[:, :, channel], expected)


def test_legend_shows_every_role_colour():
    h, w = 200, 200
    roles = ["main", "interacting", "kept", "dropped"]
    items = [
        item(i + 1, r, rect_mask(h, w, 10 + 40 * i, 40 + 40 * i, 10, 60))
        for i, r in enumerate(roles)
    ]
    view = debug_view(noise_image(h, w), items, np.zeros((h, w), np.float32))
    legend = view[debug_layout(h, w, 4).legend_y :]
    for role in roles:
        assert (legend == ROLE_COLOURS[role]).all(axis=2).sum() > 20, role


def test_bad_inputs_raise_value_error_naming_the_problem():
    h, w = 50, 60
    image, alpha = noise_image(h, w), np.zeros((h, w), np.float32)
    with pytest.raises(ValueError, match="unknown role 'winner'"):
        debug_view(image, [item(1, "winner", rect_mask(h, w, 0, 9, 0, 9))], alpha)
    with pytest.raises(ValueError, match=r"mask of #1 must have shape \(50, 60\), got \(5, 6\)"):
        debug_view(image, [item(1, "main", np.zeros((5, 6), bool))], alpha)
    with pytest.raises(ValueError, match=r"alpha must have shape \(50, 60\)"):
        debug_view(image, [], np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        debug_view(image, [], np.full((h, w), 2.0, np.float32))
    with pytest.raises(ValueError, match="H×W×3"):
        debug_view(image[:, :, 0], [], alpha)


def test_symbols_the_font_lacks_are_spelled_out_never_drawn_as_boxes():
    from pipeline.viz_text import drawable, has_glyph

    size = 14
    assert not has_glyph(size, "×") and has_glyph(size, "x")  # the bundled font's gap
    assert drawable("0.75 × 0.90 ≥ 0.5 − 1 → é", size) == "0.75 x 0.90 >= 0.5 - 1 -> e"
    assert drawable("·…±%", size) == "·…±%"  # glyphs it has stay
    h, w = 80, 120
    image, alpha = noise_image(h, w), np.zeros((h, w), np.float32)
    mask = rect_mask(h, w, 30, 70, 20, 90)

    def with_reason(reason):
        one = DebugItem(1, "person", "dropped", 0.5, mask, mask_to_xyxy(mask), (), reason)
        return debug_view(image, [one], alpha)

    # the reason the keep policy writes reads exactly as its ASCII spelling: no empty box
    np.testing.assert_array_equal(
        with_reason("secondary (score 0.50 < 0.75 × 0.90)"),
        with_reason("secondary (score 0.50 < 0.75 x 0.90)"),
    )


def test_tags_in_a_crowd_never_cover_each_other():
    from pipeline.viz_text import Tag, place_tags

    # 20 people with the same box corner: each tag must find its own spot or give way
    tags = [Tag((30.0, 40.0, 90.0, 160.0), (120, 16), (28, 16)) for _ in range(20)]
    spots = place_tags(tags, (200, 180))
    placed = [s for s in spots if s is not None]
    assert spots[0] is not None and not spots[0].short  # the best rank keeps its full tag
    assert any(s.short for s in placed)  # later ones shrink to "#rank" where full ones do not fit
    crowded = place_tags(tags, (130, 40))  # a tiny panel: some have to be left out
    assert crowded[0] is not None and None in crowded
    for s in placed:
        assert 0 <= s.x and s.x + s.width <= 200 and 0 <= s.y and s.y + s.height <= 180
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            apart = (
                a.x + a.width <= b.x
                or b.x + b.width <= a.x
                or a.y + a.height <= b.y
                or b.y + b.height <= a.y
            )
            assert apart, (a, b)


def test_two_instances_on_one_box_both_show_their_tags():
    h, w = 200, 300
    image = noise_image(h, w)
    mask = rect_mask(h, w, 100, 190, 50, 250)
    line_px = debug_layout(h, w, 2).line_px
    items = [item(1, "main", mask), item(2, "kept", mask)]
    view = debug_view(image, items, np.zeros((h, w), np.float32))
    photo = view[:h, :w]
    inner = np.zeros((h, w), bool)
    inner[100 + line_px : 190 - line_px, 50 + line_px : 250 - line_px] = True
    for role in ("main", "kept"):  # each tag's fill shows (outside the outline band too)
        fill = (photo == ROLE_COLOURS[role]).all(axis=2)
        assert fill[~inner].sum() > 0 and (fill & inner).sum() + fill[:100].sum() > 200, role


def test_salient_map_gets_its_own_panel():
    h, w = 90, 120
    saliency = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    layout = debug_layout(h, w, 1, with_saliency=True)
    assert layout.saliency_yx is not None and layout.width == 3 * w  # a row fits 16:9 better
    view = debug_view(
        noise_image(h, w),
        [item(1, "main", rect_mask(h, w, 20, 70, 10, 80))],
        np.zeros((h, w), np.float32),
        saliency=saliency,
    )
    y, x = layout.saliency_yx
    panel = view[y : y + h, x : x + w, 0]
    np.testing.assert_array_equal(panel, np.rint(saliency * 255).astype(np.uint8))
    assert debug_layout(h, w, 1).saliency_yx is None
    with pytest.raises(ValueError, match="saliency"):
        debug_view(noise_image(h, w), [], np.zeros((h, w), np.float32), saliency=saliency[:5])


def test_tag_prints_signed_contributions_or_cue_values():
    mask = rect_mask(50, 60, 10, 40, 10, 40)
    shares = DebugItem(4, "dog", "main", 0.8, mask, mask_to_xyxy(mask),
                       (("area_frac", 1.234), ("blur", -0.5)), contributions=True)  # fmt: skip
    assert label_text(shares) == "#4 0.80 area_frac+1.23 blur-0.50"
    values = DebugItem(4, "dog", "main", 0.8, mask, mask_to_xyxy(mask), (("blur", 0.81),))
    assert label_text(values) == "#4 0.80 blur=0.81"

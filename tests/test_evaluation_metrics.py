"""Each evaluation metric on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from eval_fakes import L1Perceptual, make_pipeline
from magec.evaluation.ecs import ecs_from_distances, edit_consistency, edit_consistency_score
from magec.evaluation.edit_plans import EditPlanConfig, ecs_edits, random_edits
from magec.evaluation.realism import RealismConfig, build_manifold, knn_radii, random_vgg16_trunk, realism_score
from magec.evaluation.reconstruction import mse01, reconstruction_metrics
from magec.evaluation.stats import paired_t_test
from magec.evaluation.target import attribute_probability, improved_target, signed_target_change

# ---- reconstruction ----------------------------------------------------------------------------


def test_mse_is_on_the_unit_pixel_scale():
    a = torch.full((2, 3, 4, 4), -1.0)
    b = a.clone()
    b[1] = 1.0  # black vs white: squared error 1 on [0, 1]
    b[0, 0] = 0.0  # one channel of three at half grey: 0.25 / 3
    assert torch.allclose(mse01(a, b), torch.tensor([0.25 / 3, 1.0]))


def test_reconstruction_metrics_use_the_given_distance():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    out = reconstruction_metrics(L1Perceptual(), a, b)
    assert out["lpips"].item() == pytest.approx(0.5)
    assert out["mse"].item() == pytest.approx(0.0625)


# ---- ECS -----------------------------------------------------------------------------------------


def test_ecs_of_a_perfectly_cyclic_edit_is_zero():
    x = torch.zeros(2, 3, 4, 4)
    edited = x + 0.4
    out = edit_consistency(L1Perceptual(), x, edited, x.clone())
    assert torch.equal(out["ecs"], torch.zeros(2))


def test_ecs_hand_computed():
    # d(p, cyc) = 0.2, d(p, edit) = 0.5, d(edit, cyc) = 0.3 -> 2 * 0.2 / 0.8 = 0.5
    assert ecs_from_distances(torch.tensor([0.2]), torch.tensor([0.5]), torch.tensor([0.3])).item() == pytest.approx(
        0.5
    )
    # a round trip that lands on the edit (no return at all): d(p,cyc) = d(p,edit), d(edit,cyc) = 0 -> 2
    assert ecs_from_distances(torch.tensor([0.5]), torch.tensor([0.5]), torch.tensor([0.0])).item() == pytest.approx(
        2.0
    )


def test_ecs_of_an_edit_that_moved_nothing_is_undefined_and_left_out_of_the_mean():
    e = ecs_from_distances(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    assert math.isnan(e.item())
    assert edit_consistency_score([0.5, float("nan"), 1.0]) == pytest.approx(0.75)


# ---- realism -------------------------------------------------------------------------------------


def _line(points):
    return torch.tensor(points, dtype=torch.float64)[:, None]


def test_knn_radii_exclude_the_point_itself():
    r = knn_radii(_line([0.0, 1.0, 3.0, 7.0]), k=1)
    assert r.tolist() == [1.0, 1.0, 2.0, 4.0]
    r2 = knn_radii(_line([0.0, 1.0, 3.0, 7.0]), k=2)
    assert r2.tolist() == [3.0, 2.0, 3.0, 6.0]


def test_realism_prunes_the_larger_half_of_radii_and_takes_the_max_ratio():
    # radii (k=1): 1, 1, 2, 4 -> median 1.5 keeps the points 0 and 1 (radius 1 each)
    manifold = build_manifold(_line([0.0, 1.0, 3.0, 7.0]), RealismConfig(k=1))
    assert manifold.features.squeeze(1).tolist() == [0.0, 1.0]
    assert manifold.size == 4
    # at 0.5: distance 0.5 to both kept points -> 1 / 0.5 = 2
    # at 3.0: nearest kept point 1.0 at distance 2 -> 0.5 (the pruned point 3.0 itself does not count)
    # at -4.0: distance 4 to 0.0 -> 0.25
    scores = realism_score(manifold, _line([0.5, 3.0, -4.0]))
    assert scores.tolist() == pytest.approx([2.0, 0.5, 0.25])


def test_a_kept_reference_point_is_realistic_and_a_far_point_is_not():
    feats = torch.randn(40, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    manifold = build_manifold(feats, RealismConfig(k=3))
    assert (realism_score(manifold, manifold.features) >= 1).all()
    assert realism_score(manifold, torch.full((1, 5), 50.0, dtype=torch.float64)).item() < 1


def test_realism_needs_more_reference_points_than_k():
    with pytest.raises(ValueError):
        knn_radii(_line([0.0, 1.0, 2.0]), k=3)


@pytest.mark.slow
def test_random_trunk_fallback_is_reproducible_named_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = random_vgg16_trunk(seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    b = random_vgg16_trunk(seed=4)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    fa = a(x)
    assert torch.allclose(fa, b(x)) and fa.shape == (2, 64 + 128 + 256 + 512 + 512)
    assert not torch.allclose(fa[0], fa[1])
    assert "random-init" in a.name


# ---- improved target ------------------------------------------------------------------------------


def test_improved_target_follows_the_edit_direction_and_floors_at_zero():
    before, after = torch.tensor([0.2, 0.2, 0.7]), torch.tensor([0.9, 0.1, 0.4])
    assert improved_target(before, after, 1.0).tolist() == pytest.approx([0.7, 0.0, 0.0])
    assert improved_target(before, after, -1.0).tolist() == pytest.approx([0.0, 0.1, 0.3])
    assert signed_target_change(before, after, 1.0).tolist() == pytest.approx([0.7, -0.1, -0.3])


def test_continuous_attributes_are_mapped_to_unit_range():
    layout = make_pipeline().describer.layout
    probs = torch.tensor([[0.9, 0.0, 1.0, 0.0], [0.1, 0.5, 0.0, 0.5]])  # ages 40 and 40
    assert attribute_probability(layout, probs, "male").tolist() == pytest.approx([0.9, 0.1])
    assert attribute_probability(layout, probs, "age").tolist() == pytest.approx([0.5, 0.5])  # (40-20)/(60-20)


# ---- paired t-test --------------------------------------------------------------------------------


def test_paired_t_test_matches_scipy_and_the_formula():
    a = [0.91, 0.95, 1.02, 0.99, 1.10, 0.97]
    b = [0.88, 0.96, 0.97, 0.93, 1.01, 0.95]
    res = paired_t_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert res.statistic == pytest.approx(ref.statistic) and res.pvalue == pytest.approx(ref.pvalue)
    d = np.subtract(a, b)
    assert res.statistic == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(len(d))))
    assert res.n == 6 and res.mean_difference == pytest.approx(d.mean())


def test_paired_t_test_drops_nan_pairs_and_handles_no_difference():
    res = paired_t_test([1.0, float("nan"), 3.0, 4.0], [0.5, 2.0, 2.0, 3.9])
    assert res.n == 3
    same = paired_t_test([1.0, 2.0], [1.0, 2.0])
    assert math.isnan(same.pvalue) and not same.significant()
    with pytest.raises(ValueError):
        paired_t_test([1.0], [1.0, 2.0])


# ---- edit plans -----------------------------------------------------------------------------------


def test_random_edits_depend_only_on_seed_and_image():
    editors = make_pipeline().editors
    plan = random_edits(editors, "00003-a", seed=5)
    assert plan == random_edits(editors, "00003-a", seed=5)
    assert plan != random_edits(editors, "00004-b", seed=5)
    cfg = EditPlanConfig()
    assert len(plan) == 3 * cfg.edits_per_editor
    for op in plan:
        if op.editor == "interpolate":
            assert op.operation.startswith("sample:") and cfg.interpolation_t[0] <= op.amount <= cfg.interpolation_t[1]
        else:
            assert op.operation in editors[op.editor].operations()
            assert abs(op.amount) == editors[op.editor].default_amount


def test_ecs_edits_add_the_attribute_the_image_lacks():
    editors = make_pipeline().editors
    ops = ecs_edits(editors, "x", 0, {"male": True, "age": None})
    ig = {op.operation: op.amount for op in ops if op.editor == "interfacegan"}
    assert ig["male"] > 0
    flipped = ecs_edits(editors, "x", 0, {"male": False, "age": None})
    assert [op.amount for op in flipped if op.operation == "male"][0] < 0
    assert not any(op.editor == "interpolate" for op in ops)  # no inverse edit
    assert [op.operation for op in ops if op.editor == "ganspace"] == ["pc0", "pc1"]

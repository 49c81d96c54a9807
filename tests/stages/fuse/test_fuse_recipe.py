"""Every fusion stage written in a TOML recipe reads back equal and builds with its parameters."""
from calib.recipe.io import dumps_recipe, parse_text
from calib.recipe.schema import Recipe
from calib.stages.base import make_stage

RECIPE = """
name = "fusion-everything"
description = "each fusion stage with non-default parameters"

[inputs]
gt = "gt"
teacher = "teacher"
priors = "priors.csv"

[inputs.systems]
audio = "systems/audio"
av = "systems/av"

[[stages]]
type = "prior_fusion"
alpha = 0.75
floor = 0.01
missing = "floor"
class_alpha = { "3" = 1.0, "8" = 0.25 }

[[stages]]
type = "teacher_relabel"
threshold_deg = 15.0

[[stages]]
type = "teacher_count"
extra = 1
unknown_clips = "drop"

[[stages]]
type = "acs_views"
fuse = "cluster"
min_support = 3
emit = "gaussian"
sigma_deg = 6.0

[[stages]]
type = "checkpoint_cluster"
threshold_deg = 12.5
min_support = 5
source_column = "checkpoint"

[[stages]]
type = "calibrated_union"
method = "quantile"
bins = 10
by_class = false

[[stages]]
type = "mask_fusion"
iou_threshold = 0.2
keep_singletons = false
weights = { audio = 2.0, av = 1.0 }

[[stages]]
type = "max_envelope"
eps = 0.001
protocol = "dcase2026"

[scoring]
protocol = "dcase2026"
"""


def test_fusion_recipe_round_trips_and_builds():
    recipe = Recipe.from_dict(parse_text(RECIPE, "fusion-everything.toml"), source="fusion-everything.toml")
    again = Recipe.from_dict(parse_text(dumps_recipe(recipe), "again.toml"), source="again.toml")
    assert again.to_dict() == recipe.to_dict()
    built = [make_stage({"type": s.type, **s.params}) for s in again.stages]
    assert [b.name for b in built] == ["prior_fusion", "teacher_relabel", "teacher_count", "acs_views",
                                       "checkpoint_cluster", "calibrated_union", "mask_fusion", "max_envelope"]
    assert built[0].class_alpha == {"3": 1.0, "8": 0.25} and built[0].class_alphas() == {3: 1.0, 8: 0.25}
    assert built[6].weights == {"audio": 2.0, "av": 1.0}
    assert built[3].get_params()["sigma_deg"] == 6.0

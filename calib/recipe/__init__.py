"""Declarative recipes: inputs, an ordered list of registered stages, the emitter and the scoring
protocol, read from TOML/YAML, validated with errors that name the key, and run with a stage cache.

    from calib.recipe import load_recipe, run_recipe
    recipe = load_recipe("decision-calibrated")          # a file, or a shipped recipe's name
    run_recipe(recipe, "runs/dc", base_dir="data/")
"""
from calib.recipe.io import dump_recipe, dumps_recipe, load_recipe, resolve, shipped_recipes
from calib.recipe.runner import ChainResult, RunOutput, StageRecord, clip_sets, run_chain, run_recipe
from calib.recipe.schema import Inputs, Recipe, RecipeError, Scoring, Splits, StageSpec

__all__ = [
    "ChainResult", "Inputs", "Recipe", "RecipeError", "RunOutput", "Scoring", "Splits", "StageRecord", "StageSpec",
    "clip_sets", "dump_recipe", "dumps_recipe", "load_recipe", "resolve", "run_chain", "run_recipe", "shipped_recipes",
]

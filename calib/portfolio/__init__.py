"""Portfolios: expand a grid of recipe variants, estimate each honestly (in-sample, out-of-fold,
site-held-out), choose up to four systems (the best honest estimate plus hedges), report.

    from calib.portfolio import load_grid, run_portfolio
    grid, base = load_grid("grid.toml")
    run_portfolio(grid, base, "portfolio/", base_dir="data/")
"""
from calib.portfolio.choose import Choice, Estimate, Fragility, choose, fragility
from calib.portfolio.grid import Grid, Variant, expand, load_grid
from calib.portfolio.run import PortfolioResult, VariantResult, fold_assignment, load_portfolio, run_portfolio

__all__ = ["Choice", "Estimate", "Fragility", "Grid", "PortfolioResult", "Variant", "VariantResult", "choose",
           "expand", "fold_assignment", "fragility", "load_grid", "load_portfolio", "run_portfolio"]

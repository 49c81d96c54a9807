import pytest

from doc_examples import run_example


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``calib demo demo-out``, written in README.md and in ``calib demo --help``, run once: the
    example tests check it succeeded, the demo-table test compares its table with README.md's."""
    cwd = tmp_path_factory.mktemp("demo")
    return cwd, run_example(["demo", "demo-out"], cwd)

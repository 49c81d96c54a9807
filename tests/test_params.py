"""Typed parameter declarations (calib.params): what each rule accepts, says and rejects, the
generated __init__ (scikit-learn's contract), and a hand-written __init__ checked against its table."""
from __future__ import annotations

import inspect

import pytest

from calib.params import REQUIRED, Declared, Param, ParamError, Rule, declare, problems
from calib.stages import base
from calib.stages.base import Stage, register


@pytest.mark.parametrize("param, words, listed", [
    (Param(int, 3, "m", ge=1), "an integer >= 1", "(int >= 1)"),
    (Param(float, 0.0, "m", ge=0, le=1, unit="fraction"), "a number in [0, 1]", "(float in [0, 1]; fraction)"),
    (Param(float, 1.0, "m", gt=0, le=1), "a number in (0, 1]", "(float in (0, 1])"),
    (Param(float, 0.5, "m", ge=0.5, lt=1), "a number in [0.5, 1)", "(float in [0.5, 1))"),
    (Param(float, 1.0, "m", gt=0), "a number > 0", "(float > 0)"),
    (Param(int, 9, "m", le=9), "an integer <= 9", "(int <= 9)"),
    (Param(str, "box", "m", choices=("box", "mask")), "one of 'box', 'mask'", "(str: one of 'box', 'mask')"),
    (Param(bool, False, "m"), "true or false", "(bool)"),
    (Param((str, list), "", "m", item=str), "a string or a list of strings", "(str | list[str])"),
    (Param(list, [], "m", item=Rule(int, ge=0, le=12)), "a list of integers in [0, 12]",
     "(list[int]: items in [0, 12])"),
    (Param(dict, {}, "m", keys="class", item=Rule(float, ge=0)), "a table of class id (0..12) -> numbers >= 0",
     "(table[class -> float]: values >= 0)"),
    (Param(dict, None, "m", nullable=True), "a table (or none)", "(table | none)"),
])
def test_what_a_declaration_says(param, words, listed):
    assert param.describe() == words
    assert param.line("k") == f"k={param.default!r}  {listed} m"


@pytest.mark.parametrize("param, good, bad, detail", [
    (Param(int, 3, "m", ge=1), [1, 7], [0, -2, 1.0, 2.5, True, "3", None], None),
    (Param(float, 0.5, "m", ge=0, le=1), [0, 1, 0.25], [-0.1, 1.5, float("nan"), "0.5", True], None),
    (Param(float, 0.0, "m"), [float("inf"), -3, float("nan")], ["x", None, False], None),
    (Param(str, "a", "m", choices=("a", "b")), ["a", "b"], ["c", 1, None], None),
    (Param(bool, True, "m"), [True, False], [1, 0, "true"], None),
    (Param(list, [], "m", item=Rule(str, choices=("x", "y"))), [[], ["x", "y", "x"], ("y",)], [["z"]],
     "item 0 ('z') is not one of 'x', 'y'"),
    (Param(dict, {}, "m", keys="class", item=float), [{}, {"0": 1, "12": 0.5, 3: 2.0}],
     [{"13": 1.0}], "class 13 outside 0..12"),
    (Param(dict, {}, "m", keys="class", item=float), [], [{"x": 1.0}], "key 'x' is not a class id"),
    (Param(dict, {}, "m", keys="class", item=float), [], [{"03": 1.0}], "key '03' is not a class id"),
    (Param(dict, {}, "m", item=Rule(float, ge=0)), [{"a": 0, "b": 2.5}], [{"a": -1}],
     "the value of 'a' (-1) is not a number >= 0"),
])
def test_what_a_declaration_accepts(param, good, bad, detail):
    for v in good:
        assert param.problem(v) is None, v
    for v in bad:
        problem = param.problem(v)
        assert problem == f"must be {param.describe()}, got {v!r}" + (f": {detail}" if detail else ""), problem


class Toy(Declared):
    name = "toy"
    PARAMS = declare(n=Param(int, 3, "how many", ge=1), tags=Param(list, ["a"], "labels", item=str))


def test_the_generated_init_only_stores_and_never_shares_a_default():
    sig = inspect.signature(Toy.__init__)
    assert [(p.name, p.kind, p.default) for p in list(sig.parameters.values())[1:]] == [
        ("n", inspect.Parameter.KEYWORD_ONLY, 3), ("tags", inspect.Parameter.KEYWORD_ONLY, ["a"])]
    a, b = Toy(), Toy(n=0)  # nothing is checked in __init__ (scikit-learn's contract) ...
    a.tags.append("b")
    assert b.tags == ["a"] and Toy.PARAMS["tags"].default == ["a"]
    assert b.get_params() == {"n": 0, "tags": ["a"]} and Toy.param_defaults() == {"n": 3, "tags": ["a"]}
    with pytest.raises(ParamError, match=r"^toy: n: must be an integer >= 1, got 0$"):  # ... but when it runs
        b.check_params()
    assert b.set_params(n=2).n == 2
    with pytest.raises(ValueError, match="no parameter 'm'"):
        b.set_params(m=1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['m'\]"):
        Toy(m=1)


def test_a_required_parameter_and_a_hand_written_init():
    class Wrapper(Declared):
        PARAMS = declare(inner=Param(dict, REQUIRED, "what it wraps"), k=Param(int, 1, "a count"))

    assert str(inspect.signature(Wrapper.__init__)) == "(self, *, inner, k=1)"
    with pytest.raises(TypeError, match=r"missing required keyword argument\(s\) \['inner'\]"):
        Wrapper()
    assert Wrapper(inner={}).get_params() == {"inner": {}, "k": 1}

    class Matching(Declared):
        PARAMS = declare(k=Param(int, 1, "a count"))

        def __init__(self, *, k=1):
            self.k = k

    assert Matching().k == 1
    with pytest.raises(TypeError, match=r"'k' must be keyword-only with the declared default 1, has 2"):
        class Drifted(Declared):
            PARAMS = declare(k=Param(int, 1, "a count"))

            def __init__(self, *, k=2):
                self.k = k
    with pytest.raises(TypeError, match=r"takes \['k', 'j'\] but PARAMS declares \['k'\]"):
        class Extra(Declared):
            PARAMS = declare(k=Param(int, 1, "a count"))

            def __init__(self, *, k=1, j=0):
                self.k, self.j = k, j


def test_problems_lists_unknown_and_bad_values():
    assert problems(Toy.PARAMS, {"n": 2, "tags": ["x"]}) == []
    assert problems(Toy.PARAMS, {"n": "2", "zz": 1}) == [
        ("n", "must be an integer >= 1, got '2'"), ("zz", "unknown parameter; known: n, tags")]


def test_a_stage_must_declare_every_parameter_to_be_registered():
    class Undeclared(Stage):
        """Takes a parameter it does not declare."""

        def __init__(self, *, k=1):
            self.k = k

    class Vague(Stage):
        """Declares a parameter without saying what it means."""

        PARAMS = declare(k=Param(int, 1, " "))

    with pytest.raises(TypeError, match=r"__init__ takes \['k'\] but PARAMS declares \[\]"):
        register("t_undeclared")(Undeclared)
    with pytest.raises(TypeError, match=r"parameter\(s\) \['k'\] declared without a meaning"):
        register("t_vague")(Vague)
    assert "t_undeclared" not in base.registry() and "t_vague" not in base.registry()

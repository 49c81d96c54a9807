"""The recipe: a declarative description of one post-processing pipeline.

A recipe names its inputs (systems' prediction folders or detections tables, GT, teacher, priors),
which GT split folders stages learn from (``fit``) and which are scored (``evaluate``), an ordered
list of stages (``type`` = a registered stage name, plus its parameters), the emitter (itself a
stage type) and the scoring protocol. In TOML::

    name = "my-pipeline"
    description = "low threshold, matchability rerank, caps, grid emission"

    [inputs]
    gt = "gt"                         # paths relative to the recipe file (or calib run --data)
    [inputs.systems]
    lowthr = "systems/lowthr"         # a folder of <clip>.json, or a detections .parquet
    audio = "systems/audio"           # the first system is the primary one (or name it: primary = "...")

    [splits]
    fit = ["dev-train-sony", "dev-train-tau"]   # empty: every labeled clip
    evaluate = ["dev-test-sony", "dev-test-tau"]

    [[stages]]
    type = "threshold"
    threshold = 0.02

    [[stages]]
    type = "rerank"                   # learns: fit on the fit clips, applied to every clip
    n_estimators = 80

    [[stages]]
    type = "cap"
    per_class = 1                     # address stages.cap.per_class (portfolio axes, --set)

    [[stages]]
    type = "cap"
    name = "frame_cap"                # address for portfolios (default: the type)
    enabled = false                   # kept in the recipe, skipped when run
    per_frame = 6
    column = "score_raw"

    [[stages]]
    type = "gaussian"
    on_system = "audio"               # run on another input system (its table is replaced), not
                                      # on the primary detections

    [[stages]]
    type = "max_envelope"
    gate = "per_class"                # apply it only to the classes where it gains out-of-fold on
                                      # the fit clips ("global": everywhere or nowhere); needs gt
    gate_folds = 4                    # clip folds of the cross-fit (>= 3)
    gate_seed = 0                     # their seeded assignment
    gate_confidence = 0.95            # keep where the mean held-out gain is > 0 at this one-sided
                                      # confidence over the folds (Student's t)

    [emit]
    type = "grid"                     # any emitter stage ('calib stages'), with its parameters
    n = 3

    [scoring]
    protocol = "dcase2026"

Each section is a dataclass with ``to_dict``/``from_dict``; ``Recipe.from_dict(r.to_dict()) == r``.
Errors name the offending key by its path (``stages[2].alpha_x``) and, for unknown stage types,
list the known ones. Each stage parameter (and gate key) is checked against the stage's own
declaration (``PARAMS``, :mod:`calib.params`) when the recipe is loaded:
``stages[2].n: must be an integer >= 1, got 0``.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from calib.constants import PROTOCOLS
from calib.io.clipnames import is_safe_clip_name
from calib.io.errors import InputError
from calib.score.thresholds import parse_thresholds
from calib.stages.gate import MODES as GATE_MODES
from calib.stages.gate import RECIPE_KEYS as GATE_KEYS
from calib.stages.gate import gate_param_problem

#: keys of a stage entry that are not stage parameters (the gate keys: :mod:`calib.stages.gate`)
STAGE_KEYS = ("type", "name", "enabled", "on_system", *GATE_KEYS)
#: tables a stage may need -> the recipe input that provides it
TABLE_INPUTS = {"truth": "inputs.gt", "teacher": "inputs.teacher", "priors": "inputs.priors"}
#: a stage's name is an address segment (stages.<name>.k) and names its state folder in a run's
#: output: no path separators, dots or brackets, no control characters, at most 100 characters
STAGE_NAME = re.compile(r"[^/\\.\[\]\x00-\x1f\x7f]{1,100}")


class RecipeError(InputError):
    """A recipe that cannot be run; the message names the key path (``stages[2].alpha_x``)."""

    def __init__(self, where: str, message: str, source: str | None = None):
        self.where = where
        self.message = f"{where}: {message}" if where else message  # without the file name
        super().__init__(source or "recipe", self.message)


def _check_keys(d: Mapping, allowed: tuple[str, ...], where: str, source: str | None) -> None:
    if not isinstance(d, Mapping):
        raise RecipeError(where, f"expected a table, got {type(d).__name__} {d!r}", source)
    for k in d:
        if k not in allowed:
            path = f"{where}.{k}" if where else str(k)
            raise RecipeError(path, f"unknown key; allowed here: {', '.join(allowed)}", source)


def _typed(d: Mapping, key: str, types, where: str, source: str | None, default=None, *, required=False):
    path = f"{where}.{key}" if where else key
    if key not in d:
        if required:
            raise RecipeError(path, "missing (required)", source)
        return copy.deepcopy(default)
    v = d[key]
    names = types if isinstance(types, tuple) else (types,)
    ok = isinstance(v, names) and not (isinstance(v, bool) and bool not in names)
    if not ok:
        want = " or ".join(t.__name__ for t in names)
        raise RecipeError(path, f"expected {want}, got {type(v).__name__} {v!r}", source)
    return v


def _str_list(d: Mapping, key: str, where: str, source: str | None) -> list[str]:
    v = _typed(d, key, (list, str), where, source, default=[])
    v = [v] if isinstance(v, str) else v
    for i, x in enumerate(v):
        if not isinstance(x, str):
            raise RecipeError(f"{where}.{key}[{i}]", f"expected a string, got {x!r}", source)
    return list(v)


# ----------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    """Where the tables come from. Paths are relative to the recipe's folder (or ``--data``)."""

    systems: dict[str, str] = field(default_factory=dict)  # name -> JSON folder/file or .parquet
    primary: str | None = None  # the system that becomes ``detections`` (default: the first)
    gt: str | None = None  # GT folder (<seq>_std.json, split sub-folders) or truth .parquet
    teacher: str | None = None  # SELD CSV folder/file or teacher .parquet
    teacher_format: str = "auto"
    priors: str | None = None  # priors CSV / Parquet

    KEYS = ("systems", "primary", "gt", "teacher", "teacher_format", "priors")

    @property
    def primary_system(self) -> str:
        return self.primary or next(iter(self.systems))

    def to_dict(self) -> dict:
        d: dict[str, Any] = {}
        for k in ("primary", "gt", "teacher", "priors"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.teacher_format != "auto":
            d["teacher_format"] = self.teacher_format
        d["systems"] = dict(self.systems)
        return d

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "inputs", source: str | None = None) -> "Inputs":
        _check_keys(d, cls.KEYS, where, source)
        systems = _typed(d, "systems", dict, where, source, required=True)
        if not systems:
            raise RecipeError(f"{where}.systems", "name at least one system (name = path)", source)
        for name, path in systems.items():
            if not is_safe_clip_name(name):  # names cache files (system-<name>-<key>.parquet)
                raise RecipeError(f"{where}.systems", f"system name {name!r}: use letters, digits, '_', '-' and '.', "
                                  "not starting with '.' (it names files)", source)
            if not isinstance(path, str) or not path:
                raise RecipeError(f"{where}.systems.{name}", f"expected a path string, got {path!r}", source)
        out = cls(
            systems=dict(systems),
            primary=_typed(d, "primary", str, where, source),
            gt=_typed(d, "gt", str, where, source),
            teacher=_typed(d, "teacher", str, where, source),
            teacher_format=_typed(d, "teacher_format", str, where, source, default="auto"),
            priors=_typed(d, "priors", str, where, source),
        )
        if out.primary is not None and out.primary not in out.systems:
            raise RecipeError(f"{where}.primary", f"{out.primary!r} is not one of the systems {list(out.systems)}", source)
        formats = ("auto", "polar4", "polar6", "cart6", "cart7")
        if out.teacher_format not in formats:
            raise RecipeError(f"{where}.teacher_format", f"{out.teacher_format!r}; one of {', '.join(formats)}", source)
        return out


@dataclass
class Splits:
    """GT split folders: stages that learn are fit on ``fit`` clips; ``evaluate`` clips are scored.
    Empty lists mean every labeled clip."""

    fit: list[str] = field(default_factory=list)
    evaluate: list[str] = field(default_factory=list)

    KEYS = ("fit", "evaluate")

    def to_dict(self) -> dict:
        return {"fit": list(self.fit), "evaluate": list(self.evaluate)}

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "splits", source: str | None = None) -> "Splits":
        _check_keys(d, cls.KEYS, where, source)
        return cls(fit=_str_list(d, "fit", where, source), evaluate=_str_list(d, "evaluate", where, source))


@dataclass
class Scoring:
    """The protocol the run is scored with (``dcase2026`` or ``dcase2026-coco``)."""

    protocol: str = "dcase2026"
    iou_thresholds: list[float] | str | None = None  # list, or "start:step:end"; None = protocol default
    options: dict[str, Any] = field(default_factory=dict)  # protocol options (e.g. sigma for coco)

    KEYS = ("protocol", "iou_thresholds", "options")

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"protocol": self.protocol}
        if self.iou_thresholds is not None:
            d["iou_thresholds"] = copy.deepcopy(self.iou_thresholds)
        if self.options:
            d["options"] = copy.deepcopy(self.options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "scoring", source: str | None = None) -> "Scoring":
        _check_keys(d, cls.KEYS, where, source)
        protocol = _typed(d, "protocol", str, where, source, default="dcase2026")
        if protocol not in PROTOCOLS:
            raise RecipeError(f"{where}.protocol", f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}", source)
        thr = _typed(d, "iou_thresholds", (list, str), where, source)
        if isinstance(thr, list):
            for i, t in enumerate(thr):
                if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
                    raise RecipeError(f"{where}.iou_thresholds[{i}]", f"expected a number in (0, 1], got {t!r}", source)
            thr = [float(t) for t in thr]
        if thr is not None:  # every form checked now, not after the stages ran (kept as written: a string stays one)
            try:
                parse_thresholds(thr, protocol)
            except ValueError as e:
                hint = "; remove iou_thresholds (or score with dcase2026)" if protocol == "dcase2026-coco" else ""
                raise RecipeError(f"{where}.iou_thresholds", f"{e}{hint}", source) from None
        return cls(protocol=protocol, iou_thresholds=thr, options=dict(_typed(d, "options", dict, where, source, default={})))


@dataclass
class StageSpec:
    """One stage entry: registered ``type``, optional ``name`` (its address), ``enabled`` flag,
    optional ``on_system`` (run the stage on that input system's table instead of the primary
    detections), optional ``gate`` (``"per_class"`` / ``"global"``: wrap the stage in a
    :class:`calib.stages.gate.GatedStage`; ``"none"`` or absent: not gated) with its
    ``gate_folds`` / ``gate_seed`` / ``gate_confidence`` (in ``gate_params``) and the parameters given
    in the recipe (unlisted ones take the stage's defaults)."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    enabled: bool = True
    on_system: str | None = None
    gate: str | None = None
    gate_params: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.name or self.type

    @property
    def gated(self) -> bool:
        return self.gate in GATE_MODES

    @property
    def learns(self) -> bool:
        """Whether the built stage learns in fit (a gated stage always does: it needs the truth)."""
        return self.gated or self.stage_class().learns

    @property
    def needs_tables(self) -> tuple[str, ...]:
        inner = tuple(self.stage_class().needs_tables)
        return inner + (("truth",) if self.gated and "truth" not in inner else ())

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            d["name"] = self.name
        if not self.enabled:
            d["enabled"] = False
        if self.on_system is not None:
            d["on_system"] = self.on_system
        if self.gate is not None:
            d["gate"] = self.gate
        d.update(copy.deepcopy(self.gate_params))
        d.update(copy.deepcopy(self.params))
        return d

    def stage_class(self):
        from calib.stages.base import get_stage

        return get_stage(self.type)

    def build(self, scoring: "Scoring | None" = None):
        """A fresh, unfitted stage object with this entry's parameters; a gated entry gives a
        :class:`~calib.stages.gate.GatedStage` that scores with ``scoring`` (the recipe's)."""
        inner = self.stage_class()(**copy.deepcopy(self.params))
        if not self.gated:
            return inner
        from calib.stages.gate import RECIPE_PARAMS, GatedStage

        return GatedStage(stage={"type": self.type, **copy.deepcopy(self.params)}, gate=self.gate,
                          scoring=(scoring or Scoring()).to_dict(),
                          **{RECIPE_PARAMS[k][0]: v for k, v in self.gate_params.items()})

    @classmethod
    def from_dict(cls, d: Mapping, where: str, source: str | None = None, *, check: bool = True) -> "StageSpec":
        if not isinstance(d, Mapping):
            raise RecipeError(where, f"expected a stage table with a 'type', got {d!r}", source)
        stype = _typed(d, "type", str, where, source, required=True)
        name = _typed(d, "name", str, where, source)
        if name is not None and (not STAGE_NAME.fullmatch(name) or not name.strip()):
            raise RecipeError(f"{where}.name", f"{name!r}: a stage name has no '/', '\\', '.', '[' or ']' and at most "
                              "100 characters: it is an address segment and names a folder", source)
        enabled = _typed(d, "enabled", bool, where, source, default=True)
        on_system = _typed(d, "on_system", str, where, source)
        gate = d.get("gate")  # checked with the other gate keys below
        gate_params = {k: copy.deepcopy(d[k]) for k in GATE_KEYS if k != "gate" and k in d}
        for k, v in (({"gate": gate} if gate is not None else {}) | gate_params).items():
            problem = gate_param_problem(k, v)
            if problem:
                raise RecipeError(f"{where}.{k}", problem, source)
        if gate_params and gate is None:
            raise RecipeError(f"{where}.{next(iter(gate_params))}", "a gate parameter without a gate: add "
                              "gate = \"per_class\" (or \"global\") to the entry", source)
        params = {k: copy.deepcopy(v) for k, v in d.items() if k not in STAGE_KEYS}
        spec = cls(type=stype, params=params, name=name, enabled=enabled, on_system=on_system, gate=gate,
                   gate_params=gate_params)
        if check:
            spec.check(where, source)
        return spec

    def check(self, where: str, source: str | None = None) -> None:
        """Check the type is registered and every parameter is one the stage takes, with a value its
        declaration (the stage's ``PARAMS``) accepts: ``stages[2].n: must be an integer >= 1, got 0``."""
        from calib.stages.base import UnknownStageError

        try:
            cls = self.stage_class()
        except UnknownStageError as e:
            raise RecipeError(f"{where}.type", str(e), source) from None
        names = cls.param_names()
        clash = [k for k in names if k in STAGE_KEYS]
        if clash:  # a stage author's mistake, but say so instead of mis-reading the recipe
            raise RecipeError(where, f"stage {self.type!r} has parameter(s) {clash} that clash with recipe keys {STAGE_KEYS}", source)
        for k, v in self.params.items():
            if k not in names:
                raise RecipeError(f"{where}.{k}", f"unknown parameter of stage {self.type!r}; it takes: "
                                  f"{', '.join(names) or '(no parameters)'}", source)
            problem = cls.PARAMS[k].problem(v)  # the stage's own declaration (calib.params)
            if problem:
                raise RecipeError(f"{where}.{k}", problem, source)
        try:
            self.build()
        except Exception as e:  # __init__ only stores, but say which entry if a stage complains
            raise RecipeError(where, f"stage {self.type!r} rejects its parameters: {e}", source) from None


@dataclass
class Recipe:
    name: str
    inputs: Inputs
    stages: list[StageSpec] = field(default_factory=list)
    emit: StageSpec | None = None
    splits: Splits = field(default_factory=Splits)
    scoring: Scoring = field(default_factory=Scoring)
    description: str = ""

    KEYS = ("name", "description", "inputs", "splits", "stages", "emit", "scoring")

    def chain(self, *, enabled_only: bool = True) -> list[tuple[str, StageSpec]]:
        """(path, spec) of the stages in run order, the emitter last (path ``emit``)."""
        out = [(f"stages[{i}]", s) for i, s in enumerate(self.stages)]
        if self.emit is not None:
            out.append(("emit", self.emit))
        return [(p, s) for p, s in out if s.enabled or not enabled_only]

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["inputs"] = self.inputs.to_dict()
        d["splits"] = self.splits.to_dict()
        d["stages"] = [s.to_dict() for s in self.stages]
        if self.emit is not None:
            d["emit"] = self.emit.to_dict()
        d["scoring"] = self.scoring.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping, source: str | None = None, *, check: bool = True) -> "Recipe":
        _check_keys(d, cls.KEYS, "", source)
        name = _typed(d, "name", str, "", source, required=True)
        stages_raw = _typed(d, "stages", list, "", source, default=[])
        stages = [StageSpec.from_dict(s, f"stages[{i}]", source, check=check) for i, s in enumerate(stages_raw)]
        emit_raw = _typed(d, "emit", dict, "", source)
        emit = StageSpec.from_dict(emit_raw, "emit", source, check=check) if emit_raw is not None else None
        recipe = cls(
            name=name,
            description=_typed(d, "description", str, "", source, default=""),
            inputs=Inputs.from_dict(_typed(d, "inputs", dict, "", source, required=True), "inputs", source),
            splits=Splits.from_dict(_typed(d, "splits", dict, "", source, default={}), "splits", source),
            stages=stages,
            emit=emit,
            scoring=Scoring.from_dict(_typed(d, "scoring", dict, "", source, default={}), "scoring", source),
        )
        seen: dict[str, str] = {}
        for path, spec in recipe.chain(enabled_only=False):
            if path == "emit":
                continue
            if spec.address in seen:
                raise RecipeError(path, f"address {spec.address!r} is also used by {seen[spec.address]}; "
                                  "give one of them a distinct name = \"...\"", source)
            seen[spec.address] = path
        if check:
            recipe.check_inputs(source)
        return recipe

    def check_inputs(self, source: str | None = None) -> None:
        """Every enabled stage's tables must be provided by an input; ``on_system`` names a system."""
        for path, spec in self.chain(enabled_only=False):
            if spec.on_system is not None and spec.on_system not in self.inputs.systems:
                raise RecipeError(f"{path}.on_system", f"{spec.on_system!r} is not one of the systems "
                                  f"{list(self.inputs.systems)}", source)
        for path, spec in self.chain():
            for table in spec.needs_tables:
                key = TABLE_INPUTS.get(table)
                if key and getattr(self.inputs, key.split(".")[1]) is None:
                    gated = f" gated {spec.gate}: the gate scores it against the ground truth" if table == "truth" \
                        and spec.gated and "truth" not in spec.stage_class().needs_tables else ""
                    raise RecipeError(path, f"stage {spec.type!r}{gated} needs the {table!r} table; the recipe has no "
                                      f"{key} (add it, or disable the stage with enabled = false)", source)

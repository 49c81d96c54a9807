"""``size_guard``: the stage form of :func:`calib.stages.emit.guard.guard_sizes`."""
from __future__ import annotations

from calib.stages.emit.guard import STEPS, guard_sizes
from calib.stages.base import Param, Rule, Stage, Tables, declare, register


@register("size_guard")
class SizeGuard(Stage):
    """Keep every exported clip file within ``max_mib`` MiB by coarsening its biggest detections.

    The challenge allows 20 MiB per file. A clip that would be larger is coarsened step by step, biggest detections first, in the order of ``steps`` (round,
    drop_low, compress4, compress8, grid3, drop; see calib.stages.emit.guard). The last run's report (clips,
    steps, detections and points coarsened) is kept in ``report_``."""

    needs_columns = ("points", "score")

    PARAMS = declare(
        max_mib=Param(float, 20.0, "the largest file a clip may make (the challenge allows 20)", unit="MiB", gt=0),
        steps=Param(list, list(STEPS), "coarsening steps, in the order they are tried (see calib.stages.emit.guard)",
                    item=Rule(str, choices=STEPS)),
    )

    def apply(self, tables: Tables) -> Tables:
        self.check_params()
        res = guard_sizes(tables["detections"], int(self.max_mib * 2**20), tuple(self.steps))
        self.report_ = res.report
        return tables.replace(detections=res.table)

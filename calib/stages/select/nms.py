"""``nms``: greedy non-maximum suppression per (frame, class)."""
from __future__ import annotations

import numpy as np

from calib.render import detection_boxes, flatten
from calib.stages.base import Stage, Tables, register
from calib.stages.select.common import CLASS_KEYS, FRAME_KEYS, group_rows, keep_rows, overlap_matrix, ranking_order


def greedy_nms(iou: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean keep mask for items already sorted best first: an item is dropped when its IoU with
    a kept, better item exceeds ``threshold``."""
    n = len(iou)
    keep = np.zeros(n, bool)
    suppressed = np.zeros(n, bool)
    for i in range(n):
        if suppressed[i]:
            continue
        keep[i] = True
        suppressed |= iou[i] > threshold
    return keep


@register("nms")
class NMS(Stage):
    """Non-maximum suppression per (frame, class) on soft-mask IoU or box IoU.

    Visiting detections by ``column``
    (descending, then det_id), drop any whose IoU with an already kept one exceeds ``iou_threshold``.
    ``iou="mask"``: soft IoU of the 1 px/degree energy maps (what the scorer compares); ``"box"``:
    seam-aware box IoU (faster). ``class_agnostic`` suppresses across classes within a frame."""

    needs_columns = ("points", "score")

    def __init__(self, *, iou_threshold: float = 0.5, iou: str = "mask", column: str = "score",
                 class_agnostic: bool = False):
        self.iou_threshold = iou_threshold
        self.iou = iou
        self.column = column
        self.class_agnostic = class_agnostic

    def apply(self, tables: Tables) -> Tables:
        df = tables["detections"]
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"nms: iou_threshold must be in [0, 1], got {self.iou_threshold!r}")
        if len(df) == 0:
            return tables
        order = ranking_order(df, self.column)
        rank = np.empty(len(df), np.int64)
        rank[order] = np.arange(len(df))
        fp = flatten(df.get_column("points"))
        boxes = detection_boxes(fp)
        keep = np.ones(len(df), bool)
        for rows in group_rows(df, FRAME_KEYS if self.class_agnostic else CLASS_KEYS):
            if len(rows) < 2:
                continue
            rows = rows[np.argsort(rank[rows])]
            iou = overlap_matrix(fp, boxes, rows, self.iou)
            keep[rows] = greedy_nms(iou, self.iou_threshold)
        return tables.replace(detections=keep_rows(df, keep))

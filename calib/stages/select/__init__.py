"""Selection stages: which detections to keep (thresholds, NMS, caps, class filter) and the
class-agnostic objectness score they can be ordered by."""

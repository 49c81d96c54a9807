"""Shared plot conventions: one fixed, distinct colour per class, so every plot of a class
(PR curves, per-class bars) shows it in the same colour."""
from __future__ import annotations

#: class id -> colour: matplotlib's ten "tab" colours, then three more far from them (navy,
#: maroon, teal); 13 distinct colours for the 13 classes (a 10-colour cycle would repeat three).
CLASS_COLOURS: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#000075", "#800000", "#469990",
)

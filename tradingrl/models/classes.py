"""The trend model's classes, defined once: the feature stage's labels
-1 / 0 / +1 become class indices 0 / 1 / 2 (down, flat, up); an unlabelled
row has class ``IGNORE_INDEX`` (the loss's ``ignore_index``)."""

from __future__ import annotations

IGNORE_INDEX = -100
LABEL_OF_CLASS: tuple[int, ...] = (-1, 0, 1)
CLASS_OF_LABEL: dict[int, int] = {label: k for k, label in enumerate(LABEL_OF_CLASS)}
CLASS_NAMES: tuple[str, ...] = ("down", "flat", "up")
N_CLASSES = len(LABEL_OF_CLASS)

"""photosieve: moderates avatar photos with a certified-recall model and a human review queue."""

__version__ = "0.1.0"

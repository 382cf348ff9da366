"""Feedback stage: reviewers' decisions become labelled data for retraining and re-certifying."""

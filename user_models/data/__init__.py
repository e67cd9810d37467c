"""Behavior-log ingestion: readers, cleaning, id mapping, sessions, splits and the dataset artifact."""

from user_models.data.artifact import DatasetMeta, SequenceDataset, Sequences, SplitView

__all__ = ["DatasetMeta", "SequenceDataset", "Sequences", "SplitView"]

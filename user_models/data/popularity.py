"""Item popularity of a dataset: the one count every popularity-based component reads."""

from __future__ import annotations

import numpy as np

from user_models.data.artifact import SequenceDataset


def item_popularity(dataset: SequenceDataset) -> np.ndarray:
    """``[n_items + 1]`` int64 event counts per item id in the training split (index 0, padding, is 0).

    Training split only: the validation and test events of a user are never seen by anything that
    simulates or recommends (the MostPopular baseline, the population's candidate retrieval, metrics).
    """
    items = dataset.train_sequences().items
    return np.bincount(items, minlength=dataset.n_items + 1).astype(np.int64)

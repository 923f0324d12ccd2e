"""Baselines the reference model must beat on the same test split.

* a gradient-boosting regressor on magnitudes and colours (scikit-learn);
* the AstroMAE network without its image branches: the magnitude MLP and the same head.

If AstroMAE does not beat both, its image branches are not earning their cost.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cai_edge.models.inception import MAGNITUDE_OUT, _magnitude_mlp


def magnitude_features(magnitudes: np.ndarray) -> np.ndarray:
    """Magnitudes and the four adjacent colours."""
    mags = np.asarray(magnitudes, dtype=np.float64)
    return np.concatenate([mags, mags[:, :-1] - mags[:, 1:]], axis=1)


def fit_gradient_boosting(train_mags, train_z, val_mags, val_z, seed: int = 0):
    """HistGradientBoosting on magnitudes + colours; iterations early-stopped on the validation split."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    best, best_score = None, np.inf
    for lr in (0.05, 0.1):
        model = HistGradientBoostingRegressor(
            learning_rate=lr, max_iter=1000, max_leaf_nodes=63, min_samples_leaf=40, l2_regularization=1.0,
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=30, random_state=seed,
        )
        model.fit(magnitude_features(train_mags), train_z)
        dz = (model.predict(magnitude_features(val_mags)) - val_z) / (1 + val_z)
        score = 1.4826 * np.median(np.abs(dz - np.median(dz)))
        if score < best_score:
            best, best_score = model, score
    return best


class MagnitudeOnlyNet(nn.Module):
    """AstroMAE minus its image branches: ``magnitude_block`` → Linear(1024,1024), ReLU, Linear(1024,1)."""

    def __init__(self, n_bands: int = 5):
        super().__init__()
        self.magnitude_block = _magnitude_mlp(n_bands)
        self.concat_block = nn.Sequential(nn.Linear(MAGNITUDE_OUT, 1024), nn.ReLU(), nn.Linear(1024, 1))

    def forward(self, image: torch.Tensor | None, magnitude: torch.Tensor) -> torch.Tensor:
        return self.concat_block(self.magnitude_block(magnitude)).squeeze(1)

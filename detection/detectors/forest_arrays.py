"""A fitted scikit-learn IsolationForest as plain numpy arrays, evaluated without scikit-learn.

Why: `IsolationForest.score_samples` costs ~10 ms per call of fixed overhead (validation,
joblib, per-tree Python loops), far above our per-point budget, and pickling the estimator
would make artifacts executable. Each tree is re-laid out as a complete binary tree of depth D
(the forest's maximum depth) in heap order: node h has children 2h+1 and 2h+2. A leaf shallower
than D is padded with "always go left" nodes (threshold +inf) so that every point takes exactly
D steps and the whole forest is evaluated with D vectorised gathers. Each padded leaf slot
stores the sklearn path length of its leaf: depth + c(n_samples_in_leaf).

Exactness: sklearn compares float32 inputs with float64 thresholds (x <= t). We store t rounded
*down* to float32, for which x32 <= t32 <=> x32 <= t64, so decisions match sklearn bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_path_length", "export_forest", "forest_path_lengths", "forest_scores"]

_CHUNK = 2048


def average_path_length(n: np.ndarray | float) -> np.ndarray:
    """c(n): expected path length of an unsuccessful BST search among n points (sklearn's)."""
    n = np.asarray(n, dtype="float64")
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _round_down_f32(t: np.ndarray) -> np.ndarray:
    t32 = t.astype(np.float32)
    over = t32.astype(np.float64) > t
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


def export_forest(model) -> dict[str, np.ndarray]:
    """Arrays `feature` (T, 2^D-1) int32, `threshold` (T, 2^D-1) float32, `leaf` (T, 2^D)."""
    trees = model.estimators_
    depth = max(int(t.tree_.max_depth) for t in trees)
    n_internal, n_leaf = 2**depth - 1, 2**depth
    feature = np.zeros((len(trees), max(n_internal, 1)), dtype=np.int32)
    threshold = np.full((len(trees), max(n_internal, 1)), np.inf, dtype=np.float32)
    leaf = np.zeros((len(trees), n_leaf), dtype=np.float64)
    for i, (est, feats) in enumerate(zip(trees, model.estimators_features_, strict=True)):
        t = est.tree_
        left, right = t.children_left, t.children_right
        # A tree's features index its own column subset (estimators_features_: all of them, in
        # order, unless max_features < 1); leaves' -2 map to some column and are never read.
        feat = np.asarray(feats)[t.feature]
        thr = _round_down_f32(t.threshold)
        path = average_path_length(t.n_node_samples)
        # Iterative fill: (heap index, sklearn node, depth of that sklearn node).
        stack = [(0, 0, 0)]
        while stack:
            h, k, kdepth = stack.pop()
            level = int(np.floor(np.log2(h + 1)))
            if level == depth:
                leaf[i, h - n_internal] = kdepth + path[k]
                continue
            if left[k] == -1:  # a leaf above depth D: pad, always going left
                stack.append((2 * h + 1, k, kdepth))
                stack.append((2 * h + 2, k, kdepth))
                continue
            feature[i, h], threshold[i, h] = feat[k], thr[k]
            stack.append((2 * h + 1, left[k], kdepth + 1))
            stack.append((2 * h + 2, right[k], kdepth + 1))
    return {"feature": feature, "threshold": threshold, "leaf": leaf,
            "normalizer": np.array([average_path_length(np.array([model.max_samples_]))[0]])}


def _paths_chunk(flat: tuple, xc: np.ndarray, depth: int) -> np.ndarray:
    """Mean path length of the rows of one chunk: `depth` vectorised steps over (rows, trees).

    Node indices are absolute positions in the flattened (trees x nodes) arrays, so every
    step is three 1-D gathers (feature, threshold, input value) and an integer update."""
    feat_flat, thr_flat, leaf_flat, tree_base, leaf_base = flat
    n_features = xc.shape[1]
    xflat = xc.ravel()
    row_off = (np.arange(len(xc), dtype=np.int32) * n_features)[:, None]
    base = np.broadcast_to(tree_base, (len(xc), tree_base.shape[1]))
    node = base.copy()
    for _ in range(depth):
        f = feat_flat[node]
        right = xflat[row_off + f] > thr_flat[node]
        # local' = 2 * local + 1 + right, with local = node - base
        node = 2 * node - base + 1 + right
    return leaf_flat[node + (leaf_base - tree_base)].mean(axis=1)


def forest_path_lengths(arrays: dict[str, np.ndarray], X: np.ndarray, threads: int = 2) -> np.ndarray:
    """Mean path length over the trees for each row of X (n, n_features).

    Large batches are split into chunks (cache-sized) scored on `threads` threads: numpy
    releases the GIL inside the gathers, so two cores give close to twice the throughput."""
    feature, threshold, leaf = arrays["feature"], arrays["threshold"], arrays["leaf"]
    n_trees, n_leaf = leaf.shape
    depth = int(np.log2(n_leaf))
    n_internal = feature.shape[1]
    tree_base = (np.arange(n_trees, dtype=np.int32) * n_internal)[None, :]
    # Leaf slot of a node at the last level: its local index minus the internal node count.
    leaf_base = (np.arange(n_trees, dtype=np.int32) * n_leaf - (n_leaf - 1))[None, :]
    flat = (feature.ravel().astype(np.int32), threshold.ravel(), leaf.ravel(), tree_base, leaf_base)
    X = np.ascontiguousarray(X, dtype=np.float32)
    chunks = [X[lo: lo + _CHUNK] for lo in range(0, len(X), _CHUNK)]
    if len(chunks) <= 1 or threads <= 1:
        parts = [_paths_chunk(flat, c, depth) for c in chunks]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(lambda c: _paths_chunk(flat, c, depth), chunks))
    return np.concatenate(parts) if parts else np.zeros(0)


def forest_scores(arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """sklearn's `score_samples` (the negated anomaly score 2^(-E[h]/c(psi)))."""
    return -np.power(2.0, -forest_path_lengths(arrays, X) / arrays["normalizer"][0])

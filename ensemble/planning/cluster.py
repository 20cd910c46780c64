"""Passages → clusters → each cluster's distinctive terms and its most typical passage (scikit-learn).

Passages are tf-idf vectors of their content terms (sublinear tf, idf over the theme's passages), reduced by
latent semantic analysis (truncated SVD) and length-normalized, then grouped by k-means: the recipe of
scikit-learn's text clustering example. A term is distinctive of a cluster when most passages holding it are in
the cluster (precision) and many of the cluster's passages hold it (coverage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .terms import PassageTerms

MAX_DF = 0.5  # terms in more than this share of the theme's passages name no topic (and flood an OR query)
MIN_DF = 2
LSA_DIMS = 100
MIN_PRECISION = 0.5  # a query term's passages lie mostly in its topic's cluster, or it pulls in others


@dataclass(frozen=True)
class Clusters:
    labels: np.ndarray  # cluster of each passage
    vocab: list[str]  # the terms of the matrix columns
    presence: object  # scipy CSR matrix, passages × vocab, 1 where the passage holds the term
    representative: list[int]  # per cluster: the passage nearest its centre


def _identity(terms: Sequence[str]) -> Sequence[str]:
    return terms


def vectorize(passages: Sequence[PassageTerms]):
    """(tf-idf matrix, vocabulary); terms in at least MIN_DF passages (1 for a tiny set) and at most MAX_DF."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [p.terms for p in passages]
    for min_df, max_df in ((MIN_DF, MAX_DF), (1, 1.0)):
        vec = TfidfVectorizer(analyzer=_identity, min_df=min_df, max_df=max_df, sublinear_tf=True)
        try:
            x = vec.fit_transform(docs)
        except ValueError:  # no term left at these bounds
            continue
        return x, list(vec.get_feature_names_out())
    return None, []


def cluster(x, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(label of each row, each row's position in the normalized LSA space) by k-means with `seed`."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    dims = min(LSA_DIMS, x.shape[1] - 1, x.shape[0] - 1)
    points = TruncatedSVD(dims, random_state=seed).fit_transform(x) if dims >= 2 else x.toarray()
    points = normalize(points)
    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(points)
    return km.labels_, points


def representatives(labels: np.ndarray, points: np.ndarray, n_clusters: int) -> list[int]:
    """Per cluster, the row most similar (cosine) to the cluster's mean; ties to the earlier row."""
    out = []
    for c in range(n_clusters):
        rows = np.flatnonzero(labels == c)
        centre = points[rows].mean(axis=0)
        out.append(int(rows[int(np.argmax(points[rows] @ centre))]))
    return out


def cluster_passages(passages: Sequence[PassageTerms], n_clusters: int, seed: int) -> Clusters | None:
    """Clusters of the passages, or None when they hold no term to cluster on."""
    x, vocab = vectorize(passages)
    if x is None or x.shape[0] < n_clusters:
        return None
    labels, points = cluster(x, n_clusters, seed)
    presence = (x > 0).astype(np.float64).tocsr()
    return Clusters(labels, vocab, presence, representatives(labels, points, n_clusters))


def term_scores(clusters: Clusters, n_clusters: int) -> np.ndarray:
    """clusters × vocab: precision² × coverage of each term for each cluster (0 where the cluster has fewer
    than MIN_DF passages holding it, unless the cluster is that small, or where less than MIN_PRECISION of the
    passages holding it are in the cluster)."""
    presence = clusters.presence
    onehot = np.zeros((n_clusters, presence.shape[0]))  # type: ignore[attr-defined]
    onehot[clusters.labels, np.arange(len(clusters.labels))] = 1.0
    in_cluster = np.asarray(presence.T.dot(onehot.T).T)  # type: ignore[attr-defined]
    df = in_cluster.sum(axis=0)
    sizes = onehot.sum(axis=1, keepdims=True)
    precision = in_cluster / np.maximum(df, 1)
    coverage = in_cluster / np.maximum(sizes, 1)
    enough = in_cluster >= np.minimum(MIN_DF, sizes)
    keep = enough & (in_cluster > 0) & (precision >= MIN_PRECISION)
    return np.where(keep, precision**2 * coverage, 0.0)


def ranked_terms(scores: np.ndarray, vocab: Sequence[str]) -> list[list[tuple[str, float]]]:
    """Per cluster, the terms that score best there (each term goes to one cluster only) with their scores,
    best first."""
    best = scores.argmax(axis=0)
    out: list[list[tuple[str, float]]] = []
    for c in range(scores.shape[0]):
        cols = [j for j in np.flatnonzero((best == c) & (scores[c] > 0))]
        cols.sort(key=lambda j: (-scores[c, j], vocab[j]))
        out.append([(vocab[j], float(scores[c, j])) for j in cols])
    return out

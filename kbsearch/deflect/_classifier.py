"""The answer model's classifier: a one-vs-rest linear SVM over the phrasings of each document."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def fit_classifier(P: sp.csr_matrix, owners: np.ndarray, n_docs: int, min_phrasings: int, max_classes: int,
                   C: float = 1.0, max_per_class: int = 0,
                   negatives: int = 0) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """A one-vs-rest linear SVM over the phrasings of documents that have at least ``min_phrasings``.

    ``max_per_class`` > 0 keeps only the first that many phrasings of each document (faster fits).
    ``negatives``: the last that many rows of ``P`` (after the phrasings') are questions of no class:
    they are fitted as one more class, whose row is dropped, so every class learns to reject them.
    """
    from sklearn.svm import LinearSVC

    counts = np.bincount(owners, minlength=n_docs) if len(owners) else np.zeros(n_docs, int)
    eligible = np.nonzero(counts >= max(min_phrasings, 2))[0]
    if len(eligible) < 2:
        return None, None, None
    if len(eligible) > max_classes:
        eligible = eligible[np.argsort(-counts[eligible], kind="stable")[:max_classes]]
        eligible.sort()
    rows = np.nonzero(np.isin(owners, eligible))[0]
    if max_per_class > 0:
        rank = np.arange(len(owners)) - np.searchsorted(owners, owners)  # position within its document
        rows = rows[rank[rows] < max_per_class]
    y = owners[rows]
    if negatives:
        rows = np.concatenate([rows, np.arange(len(owners), len(owners) + negatives)])
        y = np.concatenate([y, np.full(negatives, n_docs, dtype=y.dtype)])  # the "no answer" class
    svc = LinearSVC(C=C, tol=0.1, max_iter=200, dual=True, random_state=0)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X = P[rows].tocsr()
    # Fitted on the columns the phrasings use: a column no row has gets weight 0 anyway, and
    # liblinear's dense (classes x columns) weights over the whole vocabulary, bodies' n-grams
    # included, cost ~400 MB at 150 classes x 200k columns.
    used = np.unique(X.indices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svc.fit(X[:, used], y)
    coef = svc.coef_.astype(np.float32)
    intercept = svc.intercept_.astype(np.float32)
    classes = svc.classes_.astype(np.int32)
    if len(classes) == 2:  # binary LinearSVC has one row; make it one-vs-rest shaped
        coef = np.vstack([-coef[0], coef[0]])
        intercept = np.array([-intercept[0], intercept[0]], dtype=np.float32)
    if negatives:
        keep = classes != n_docs
        coef, intercept, classes = coef[keep], intercept[keep], classes[keep]
    r, c = np.nonzero(coef)
    full = sp.csr_matrix((coef[r, c], (r, used[c])), shape=(len(classes), P.shape[1]), dtype=np.float32)
    return full, intercept, classes

"""A grid search over DualHeadClassifier on a dask cluster of two processes."""

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV

from sk_dualhead import DualHeadClassifier

distributed = pytest.importorskip("dask.distributed")


def _search():
    return GridSearchCV(
        DualHeadClassifier(
            hidden_sizes=(8,), max_epochs=5, n_networks=1, n_threads=1, random_state=0
        ),
        {"gamma": [0.5, 2.0], "loss_weights": [None, (0.5, 0.5, 0.0)]},
        scoring="neg_log_loss",
        cv=2,
        n_jobs=-1,
    )


def test_grid_search_through_joblib_dask_backend():
    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with (
            distributed.get_task_stream(client) as tasks,
            joblib.parallel_backend("dask"),
        ):
            search = _search().fit(X, y)
        addresses = set(client.scheduler_info()["workers"])
    # The fits ran on the cluster's two worker processes...
    assert len(addresses) == 2
    assert tasks.data and {task["worker"] for task in tasks.data} <= addresses
    # ...and gave what the same search gives in this process: fits are seeded
    # and deterministic on the CPU, wherever they run.
    local = _search().set_params(n_jobs=1).fit(X, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    assert search.best_estimator_.predict_proba(X).shape == (120, 2)

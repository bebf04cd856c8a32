"""
Tune the loss mix with GridSearchCV
===================================

Strategies and their knobs are hyperparameters: this search compares the
focal parameter ``gamma`` and two weightings of the heads, scored by log
loss, on an imbalanced version of the breast cancer data.
"""

# %%
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sk_dualhead import DualHeadClassifier
from sk_dualhead.strategies import STRATEGIES

X, y = load_breast_cancer(return_X_y=True, as_frame=True)
y = 1 - y  # malignant is the positive class
rng = np.random.default_rng(0)
keep = (
    np.flatnonzero(y == 0).tolist()
    + rng.choice(np.flatnonzero(y == 1), size=40, replace=False).tolist()
)
X, y = X.iloc[keep], y.iloc[keep]
print(f"{len(y)} rows, {y.mean():.1%} positive")

# %%
# The grid
# --------
# ``gamma=None`` and ``loss_weights=None`` keep the strategy's own values;
# ``(0.5, 0.5, 0.0)`` weighs the heads equally and drops the consistency
# term. Each candidate trains one network (``n_networks=1``), a fifth of the
# default's cost on a table this small.
search = GridSearchCV(
    DualHeadClassifier(
        hidden_sizes=(32,), max_epochs=30, n_networks=1, n_threads=1, random_state=0
    ),
    {
        "strategy": sorted(STRATEGIES)[:2],
        "gamma": [None, 0.5],
        "loss_weights": [None, (0.5, 0.5, 0.0)],
    },
    scoring={"log_loss": "neg_log_loss", "average_precision": "average_precision"},
    refit="log_loss",
    cv=StratifiedKFold(3, shuffle=True, random_state=0),
).fit(X, y)

# %%
# Results, best first
# -------------------
results = search.cv_results_
params = [{name: str(value) for name, value in p.items()} for p in results["params"]]
table = pd.DataFrame(params).assign(
    log_loss=-results["mean_test_log_loss"],
    average_precision=results["mean_test_average_precision"],
)
print(table.sort_values("log_loss").to_string(index=False, float_format="%.4f"))
print("best:", search.best_params_)

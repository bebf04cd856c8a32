"""
Fit, check calibration and look at the loss terms
=================================================

Fit a :class:`~sk_dualhead.DualHeadClassifier` on scikit-learn's breast
cancer data, compare its held-out probabilities with logistic regression in
a reliability diagram, and plot every term of the combined loss per epoch.
"""

# %%
# Fit on a training split
# -----------------------
# The estimator takes the DataFrame as it is. On a table this small it
# averages eight networks, trained at once, each with its own weights and
# held-out rows; each of ``members_`` records its loss terms per epoch.
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_dualhead import DualHeadClassifier
from sk_dualhead.metrics import calibration_report

X, y = load_breast_cancer(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
clf = DualHeadClassifier(random_state=0)
clf.fit(X_train, y_train)
for index, member in enumerate(clf.members_):
    print(
        f"network {index}: {member.n_epochs} epochs, kept the weights of "
        f"epoch {member.best_epoch}"
    )

# %%
# Scores on the test split
# ------------------------
# :func:`~sk_dualhead.metrics.calibration_report` gives the calibration
# intercept and slope next to the Brier score and the ECE.
logreg = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)
probas = {
    "DualHead": clf.predict_proba(X_test),
    "LogisticRegression": logreg.predict_proba(X_test),
}
import pandas as pd

reports = {
    name: calibration_report(y_test, proba[:, 1], n_bins=10)
    for name, proba in probas.items()
}
print(pd.DataFrame(reports).round(3))

# %%
# Reliability diagram
# -------------------
# Points on the diagonal mean that, among the samples given a probability
# near ``p``, a share ``p`` are positive. The histogram below shows how many
# samples each point rests on.
import matplotlib.pyplot as plt

from sk_dualhead.plot import plot_loss_curves, plot_reliability, plot_roc_pr

fig, (ax, hist_ax) = plt.subplots(
    2, 1, figsize=(5.5, 7), height_ratios=(3, 1), constrained_layout=True
)
for name, proba in probas.items():
    plot_reliability(y_test, proba, name=name, ax=ax, hist_ax=hist_ax)

# %%
# ROC and precision-recall curves
# -------------------------------
_, axes = plt.subplots(1, 2, figsize=(10, 4.5), constrained_layout=True)
for name, proba in probas.items():
    plot_roc_pr(y_test, proba, name=name, axes=axes)

# %%
# Loss terms per epoch
# --------------------
# The main head (focal loss) falls much lower than the auxiliary head
# (label-smoothed cross-entropy), whose smoothing puts a floor under it; the
# dotted line marks the epoch with the best validation log loss.
plot_loss_curves(clf)
plt.show()

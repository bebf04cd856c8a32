"""Docstring fragments shared by several functions, in imbalanced-learn's manner."""

__all__ = ["Substitution"]


class Substitution:
    """Replace ``{name}`` in a docstring by the fragment given as ``name``.

    Only the names given are replaced, so the braces of LaTeX formulas in the
    same docstring are left alone.
    """

    def __init__(self, **fragments):
        self.fragments = fragments

    def __call__(self, obj):
        doc = obj.__doc__
        for name, fragment in self.fragments.items():
            doc = doc.replace("{" + name + "}", fragment.strip())
        obj.__doc__ = doc
        return obj


#: The ``X`` entry of the estimator's prediction methods.
X_PREDICT = """\
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data."""

#: The arguments every loss function of :mod:`sk_dualhead.losses` shares.
LOSS_INPUTS = """\
    logits : torch.Tensor of shape (n_samples, n_classes)
        Unnormalised scores.
    target : torch.LongTensor of shape (n_samples,)
        Class indices in ``[0, n_classes)``."""

#: The sample weights and the reduction of every loss function, and what it returns.
LOSS_REDUCTION = """\
    sample_weight : torch.Tensor of shape (n_samples,), default=None
        Per-sample weights.
    reduction : {"mean", "sum", "none"}, default="mean"
        How to combine the per-sample losses.

    Returns
    -------
    loss : torch.Tensor
        A scalar, or a ``(n_samples,)`` tensor when ``reduction="none"``."""

#: The same, after the class weights of the losses that take them.
LOSS_WEIGHTS = (
    """\
    alpha : torch.Tensor of shape (n_classes,), default=None
        Per-class weights, applied by the sample's true class.
"""
    + LOSS_REDUCTION
)

#: The labels, probabilities and name of the calibration plots.
BINARY_PROBABILITIES = """\
    y_true : array-like of shape (n_samples,)
        True labels of a binary problem.

    y_prob : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted probability of the positive class, or the output of
        ``predict_proba`` (its second column is used).

    name : str, default=None
        Name of the model in the legend."""

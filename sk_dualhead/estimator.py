"""The public estimator: :class:`DualHeadClassifier`."""

import functools
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_random_state

from . import __version__
from ._docstring import X_PREDICT, Substitution
from ._engine import (
    NETWORK_OPTIONS,
    TrainingConfig,
    device_available,
    fit_members,
    load_network,
    member_log_proba,
    network_state,
    shared_random_state,
    torch_threads,
    training_device,
)
from ._validation import (
    as_float32,
    check_hyperparameters,
    encode_targets,
    resolve_device,
    sample_weights,
    validate_input,
)
from .calibration import CALIBRATORS
from .preprocessing import TabularPreprocessor
from .serialization import save
from .strategies import KNOBS, STRATEGIES, choose_strategy, class_weights, resolve_strategy

__all__ = ["DualHeadClassifier"]

#: ``n_networks="auto"``: (fewer rows than, networks) in increasing rows;
#: from the last bound on, one network. Eight below 1,000 rows, where one
#: network's variance is largest and a fit takes seconds.
AUTO_NETWORKS = ((1_000, 8), (10_000, 5))


def _auto_networks(n_rows):
    """Networks that ``n_networks="auto"`` trains on ``n_rows`` rows."""
    return next((networks for bound, networks in AUTO_NETWORKS if n_rows < bound), 1)


def _two_valued_columns(continuous):
    """``(column, low, high)`` of each column of at most two values.

    One-hot levels and missing indicators are such columns: any function of
    them is linear in them, so the network folds their embeddings into its
    first layer (a constant column gets ``high = low + 1``).
    """
    found = []
    for j, column in enumerate(continuous.T):
        low, high = column.min(), column.max()
        if np.all((column == low) | (column == high)):
            found.append((j, float(low), float(high) if high > low else float(low) + 1.0))
    return tuple(found)


def _keeps_previous_fit_on_failure(fit):
    """Make ``fit`` all or nothing: on any exception, restore the fitted state.

    ``fit`` sets fitted attributes as it goes (``validate_data`` alone sets
    ``n_features_in_``); without this, a failed refit would leave a mix of
    the old model and the new data's attributes that predicts nonsense.
    """

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        previous = self.__dict__.copy()
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            # BaseException: a Ctrl-C must not leave a half-fitted model either.
            self.__dict__.clear()
            self.__dict__.update(previous)
            raise

    return wrapper


class DualHeadClassifier(ClassifierMixin, BaseEstimator):
    """Two-headed neural network classifier for tabular data.

    A shared MLP trunk feeds two linear heads trained with different losses:
    the main head with focal loss, which concentrates on hard and rare
    examples, and the auxiliary head with label-smoothed cross-entropy, a
    steady, well-calibrated signal. A KL consistency term pulls the auxiliary
    head toward the (detached) main head. The combination is named by
    ``strategy`` and each of its parts can be overridden by the knobs below,
    so all of them can be tuned by :class:`~sklearn.model_selection.GridSearchCV`.

    Several such networks (``n_networks``) are trained at once, packed into
    one batched network, each on its own split with its own early stopping
    and calibration; ``predict_proba`` averages their probabilities.

    Read more in the :ref:`User Guide <concepts>`.

    Parameters
    ----------
    strategy : str, default="balanced"
        Name of the loss strategy, a key of
        :data:`sk_dualhead.strategies.STRATEGIES` (``"balanced"``,
        ``"focal_smooth"``, ``"confidence_aware"``, ``"adversarial"``,
        ``"double_focal"``), or ``"auto"``, chosen from the training data by
        :func:`~sk_dualhead.strategies.choose_strategy`. See
        :ref:`strategies`.

    hidden_sizes : tuple of int, default=(256, 256)
        Widths of the trunk's hidden layers.

    activation : {"relu", "gelu", "silu", "selu", "tanh"}, default="relu"
        Non-linearity of the trunk.

    dropout : float, default=0.3
        Dropout probability after each hidden layer. See
        :doc:`/benchmarks/defaults` for this and the other defaults.

    normalization : {"batchnorm", "layernorm"} or None, default=None
        Normalisation after each hidden linear layer.

    numerical_embedding : {"periodic"} or None, default="periodic"
        Embedding of the continuous input columns before the trunk;
        ``"periodic"`` is PLR (Gorishniy et al. 2022), which lets the first
        layer learn non-monotone effects of a column: 16 values per column,
        fewer (at least 4) when more than 16 columns share 256. A two-valued
        column (a one-hot level, a missing indicator) is embedded too, folded
        into the first layer at the cost of one input. ``None`` feeds the
        columns as they are: a cheaper fit for nearly linear tables.

    lr : float, default=1e-3
        Learning rate of the AdamW optimizer.

    weight_decay : float, default=1e-2
        Decoupled weight decay of AdamW.

    max_grad_norm : float, default=None
        Clip the L2 norm of each network's gradient to this value before
        each step; ``None`` does not clip.

    max_epochs : int, default=200
        Maximum number of passes over the training data.

    batch_size : int or "auto", default="auto"
        Most rows of a network's gradient step: an epoch's training rows are
        split into equal batches of at most this many. ``"auto"`` uses
        ``min(224, max(16, n_train // 8))``.

    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training data (stratified),
        stop a network when its calibrated validation log loss has not
        improved by ``tol`` for ``n_iter_no_change`` epochs and restore the
        weights of its best epoch. ``False`` trains ``max_epochs`` epochs on
        all rows.

    validation_fraction : float, default=0.15
        Share of the training data held out for early stopping.

    n_iter_no_change : int, default=6
        Epochs without improvement before a network stops.

    tol : float, default=1e-4
        Minimum decrease of the validation log loss that counts as an
        improvement.

    n_networks : int or "auto", default="auto"
        Networks trained, each from its own initial weights on its own
        held-out split; ``"auto"`` trains 8 on fewer than 1,000 rows, 5 on
        fewer than 10,000 and 1 on more. See :doc:`/howto/ensembles`.

    gamma : float or "adaptive", default=None
        Focusing parameter of the main head's focal loss; ``"adaptive"`` is
        FLSD-53. ``None`` keeps the strategy's value.

    label_smoothing : float, default=None
        Label smoothing of the auxiliary head's cross-entropy; ``None`` keeps
        the strategy's value.

    loss_weights : tuple of 3 floats, default=None
        ``(w_main, w_aux, w_consistency)``; ``None`` keeps the strategy's.

    class_balance_beta : float, default=None
        ``beta`` in ``[0, 1)`` of the class-balanced weights (Cui et al.
        2019) of both heads; ``None`` keeps the strategy's.

    confidence_penalty : float, default=None
        Weight of the entropy bonus (Pereyra et al. 2017) of an auxiliary
        cross-entropy; ``None`` keeps the strategy's.

    adversarial_epsilon : float, default=None
        FGSM step on the preprocessed continuous inputs; 0 turns
        adversarial training off; ``None`` keeps the strategy's.

    noise_q : float, default=None
        ``q`` in ``(0, 1]`` of an auxiliary generalized cross-entropy;
        ``None`` keeps the strategy's.

    calibration : {"temperature", "platt", "auto"} or None, default="temperature"
        Post-hoc calibration of each network, fitted on its held-out rows;
        ``"auto"`` is Platt for two classes and temperature for more.
        Without held-out rows nothing is calibrated. See
        :doc:`/howto/calibration`.

    calibrated_probabilities : bool, default=False
        Tells ``strategy="auto"`` that probabilities must be accurate.

    noisy_labels : bool or "auto", default="auto"
        Tells ``strategy="auto"`` whether the labels are noisy; ``"auto"``
        estimates it.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into ``sample_weight``.

    predict_head : {"main", "aux", "mean"}, default="mean"
        Head whose probabilities ``predict_proba`` returns and early
        stopping scores; ``"mean"`` averages both heads' probabilities.

    preprocessing : "auto", None or transformer, default="auto"
        ``"auto"`` fits a :class:`~sk_dualhead.preprocessing.TabularPreprocessor`;
        a transformer is cloned and fitted instead; ``None`` feeds numeric
        input to the network as it is.

    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (the
        best available), resolved when ``fit`` is called.

    accelerator : accelerate.Accelerator, default=None
        Train data-parallel with Hugging Face Accelerate (see
        :ref:`the how-to <data-parallel>`); ``device`` is then ignored.

    n_threads : int, default=None
        Torch CPU threads while fitting and predicting; ``None`` leaves
        torch's setting alone.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout, shuffling and the validation
        splits. An int gives identical results from fit to fit on the CPU.

    verbose : int, default=0
        0 is silent; 1 prints a table of the loss terms every epoch; 2 and
        more show a tqdm progress bar over the epochs instead.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    preprocessor_ : transformer or None
        The fitted preprocessing.

    n_networks_ : int
        Number of networks trained (``n_networks`` resolved).

    network_ : torch.nn.Module
        All the networks' weights, packed into one module.

    members_ : list of Member
        One record per network: its ``calibrator``, its per-epoch
        ``history``, its ``best_epoch``, ``n_epochs`` and held-out
        ``valid_rows``.

    device_ : str
        The device the model was trained on.

    strategy_ : str
        The strategy trained with (``strategy`` resolved when ``"auto"``).

    strategy_reason_ : str
        Why: the measured traits of the data under ``"auto"``.

    prior_correction_ : ndarray of shape (n_classes,) or None
        Added to both heads' logits at prediction to undo the prior shift of
        class-balanced weights, ``-log(alpha)``; None without them.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : Single-loss multilayer perceptron.
    sklearn.ensemble.HistGradientBoostingClassifier : Gradient boosted trees.

    Notes
    -----
    A failing ``fit`` (bad input, diverged training, Ctrl-C before the first
    epoch ends) raises and leaves a previously fitted model as it was. A
    Ctrl-C after at least one complete epoch ends ``fit`` with a warning and
    keeps each network's best weights so far. A pickled model records the
    package version, warns when loaded under another, and loads on the CPU
    where the device it was trained on is missing.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sk_dualhead import DualHeadClassifier
    >>> X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    >>> clf = DualHeadClassifier(max_epochs=20, random_state=0).fit(X, y)
    >>> clf.predict_proba(X.iloc[:2]).shape
    (2, 2)
    >>> len(clf.members_), clf.score(X, y) > 0.9
    (8, True)
    """

    # The HTML repr (in notebooks) links the estimator's name to its API page.
    _doc_link_module = "sk_dualhead"
    _doc_link_template = (
        "https://sk-dualhead.readthedocs.io/en/latest/generated/"
        "sk_dualhead.{estimator_name}.html"
    )

    _parameter_constraints = {
        "strategy": [StrOptions(set(STRATEGIES) | {"auto"})],
        "hidden_sizes": [tuple, list],
        "activation": [StrOptions(NETWORK_OPTIONS["activation"])],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "normalization": [StrOptions(NETWORK_OPTIONS["normalization"]), None],
        "numerical_embedding": [StrOptions(NETWORK_OPTIONS["numerical_embedding"]), None],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_networks": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "gamma": [Interval(Real, 0, None, closed="left"), StrOptions({"adaptive"}), None],
        "label_smoothing": [Interval(Real, 0, 1, closed="left"), None],
        "loss_weights": [tuple, list, None],
        "class_balance_beta": [Interval(Real, 0, 1, closed="left"), None],
        "confidence_penalty": [Interval(Real, 0, None, closed="left"), None],
        "adversarial_epsilon": [Interval(Real, 0, None, closed="left"), None],
        "noise_q": [Interval(Real, 0, 1, closed="right"), None],
        "calibration": [StrOptions(set(CALIBRATORS) | {"auto"}), None],
        "calibrated_probabilities": ["boolean"],
        "noisy_labels": ["boolean", StrOptions({"auto"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "predict_head": [StrOptions({"main", "aux", "mean"})],
        "preprocessing": [StrOptions({"auto"}), HasMethods(["fit", "transform"]), None],
        "device": [str],
        "accelerator": [HasMethods(["prepare", "backward"]), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        strategy="balanced",
        *,
        hidden_sizes=(256, 256),
        activation="relu",
        dropout=0.3,
        normalization=None,
        numerical_embedding="periodic",
        lr=1e-3,
        weight_decay=1e-2,
        max_grad_norm=None,
        max_epochs=200,
        batch_size="auto",
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=6,
        tol=1e-4,
        n_networks="auto",
        gamma=None,
        label_smoothing=None,
        loss_weights=None,
        class_balance_beta=None,
        confidence_penalty=None,
        adversarial_epsilon=None,
        noise_q=None,
        calibration="temperature",
        calibrated_probabilities=False,
        noisy_labels="auto",
        class_weight=None,
        predict_head="mean",
        preprocessing="auto",
        device="cpu",
        accelerator=None,
        n_threads=None,
        random_state=None,
        verbose=0,
    ):
        self.strategy = strategy
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.dropout = dropout
        self.normalization = normalization
        self.numerical_embedding = numerical_embedding
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.n_networks = n_networks
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.loss_weights = loss_weights
        self.class_balance_beta = class_balance_beta
        self.confidence_penalty = confidence_penalty
        self.adversarial_epsilon = adversarial_epsilon
        self.noise_q = noise_q
        self.calibration = calibration
        self.calibrated_probabilities = calibrated_probabilities
        self.noisy_labels = noisy_labels
        self.class_weight = class_weight
        self.predict_head = predict_head
        self.preprocessing = preprocessing
        self.device = device
        self.accelerator = accelerator
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = self.preprocessing == "auto"
        tags.non_deterministic = self.device != "cpu" or self.accelerator is not None
        return tags

    # ------------------------------------------------------------------ fit

    @_keeps_previous_fit_on_failure
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the networks to the training data.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training data. DataFrames may hold numeric, categorical, string
            and boolean columns with missing values.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples, multiplied with
            ``class_weight``.

        Returns
        -------
        self : DualHeadClassifier
            The fitted estimator.
        """
        check_hyperparameters(self)
        X, y = validate_input(self, X, y, reset=True)
        self.classes_, y = encode_targets(y)
        if self.calibration == "platt" and len(self.classes_) > 2:
            raise ValueError(
                f"calibration='platt' needs 2 classes, got {len(self.classes_)}; "
                "use calibration='temperature'."
            )
        weights = sample_weights(sample_weight, X, y, self.classes_, self.class_weight)
        rng = shared_random_state(check_random_state(self.random_state), self.accelerator)
        self.n_networks_ = (
            _auto_networks(len(y)) if self.n_networks == "auto" else self.n_networks
        )
        seed = int(rng.randint(np.iinfo(np.int32).max))
        valid_rows = [self._held_out_rows(y, rng) for _ in range(self.n_networks_)]

        preprocessor = self._make_preprocessor()
        if preprocessor is not None:
            X = preprocessor.fit_transform(X)
        features = as_float32(X)
        self.preprocessor_ = preprocessor
        self.device_ = training_device(resolve_device(self.device), self.accelerator)
        entry = self._resolve_strategy(y, features, seed)
        # Counted over all rows, so that every network balances the classes
        # alike: its held-out rows are a stratified sample of them.
        alpha = class_weights(entry, np.bincount(y, minlength=len(self.classes_)))
        self.prior_correction_ = None if alpha is None else -np.log(alpha.numpy())
        config = self._training_config(entry, alpha, features, valid_rows)
        self.network_, self.members_ = fit_members(
            features, y, weights, valid_rows, seed, config
        )
        return self

    def _held_out_rows(self, y, rng):
        """One network's held-out rows, or None: too few rows, or no early stopping."""
        if not self.early_stopping:
            return None
        n_classes = len(self.classes_)
        n_valid = int(np.ceil(self.validation_fraction * len(y)))
        if (
            np.bincount(y).min() < 2
            or n_valid < n_classes
            or len(y) - n_valid < n_classes
        ):
            return None
        _, valid = train_test_split(
            np.arange(len(y)), test_size=n_valid, stratify=y, random_state=rng
        )
        return np.sort(valid)

    def _make_preprocessor(self):
        if self.preprocessing is None:
            return None
        if self.preprocessing == "auto":
            return TabularPreprocessor()
        return clone(self.preprocessing)

    def _resolve_strategy(self, y, features, seed):
        """Set ``strategy_`` and ``strategy_reason_``; return the resolved entry."""
        if self.strategy == "auto":
            self.strategy_, self.strategy_reason_ = choose_strategy(
                y,
                calibrated_probabilities=self.calibrated_probabilities,
                noisy_labels=self.noisy_labels,
                X=features,
                random_state=seed,
            )
        else:
            self.strategy_ = self.strategy
            self.strategy_reason_ = f"strategy={self.strategy!r} was given"
        knobs = {knob: getattr(self, knob) for knob in KNOBS}
        return resolve_strategy(self.strategy_, loss_weights=self.loss_weights, **knobs)

    def _training_config(self, entry, alpha, features, valid_rows):
        """What the engine trains with, resolved from the parameters once."""
        cardinalities = tuple(getattr(self.preprocessor_, "category_cardinalities_", ()))
        n_continuous = features.shape[1] - len(cardinalities)
        held_out = valid_rows[0] is not None
        n_train = len(features) - (len(valid_rows[0]) if held_out else 0)
        calibration = self.calibration
        if calibration is None and entry.always_calibrate:
            calibration = "temperature"
        if calibration == "auto":
            calibration = "platt" if len(self.classes_) == 2 else "temperature"
        return TrainingConfig(
            network={
                "n_continuous": n_continuous,
                "n_classes": len(self.classes_),
                "hidden_sizes": tuple(self.hidden_sizes),
                "activation": self.activation,
                "dropout": self.dropout,
                "normalization": self.normalization,
                "category_cardinalities": cardinalities,
                "numerical_embedding": self.numerical_embedding,
                # Only an embedding folds them; without one they are not looked for.
                "two_valued_columns": (
                    _two_valued_columns(features[:, :n_continuous])
                    if self.numerical_embedding is not None
                    else ()
                ),
            },
            strategy=entry,
            class_weights=alpha,
            # Calibrating needs held-out rows: calibrating on the rows the
            # networks were trained on would fit their over-fitting, not undo it.
            calibration=calibration if held_out else None,
            predict_head=self.predict_head,
            prior_correction=self.prior_correction_,
            lr=self.lr,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            max_epochs=self.max_epochs,
            # About eight steps per epoch on small tables, 224 rows on large ones.
            batch_size=(
                min(224, max(16, n_train // 8))
                if self.batch_size == "auto"
                else self.batch_size
            ),
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            device=self.device_,
            accelerator=self.accelerator,
            n_threads=self.n_threads,
            verbose=self.verbose,
        )

    # ---------------------------------------------------------- persistence

    def __getstate__(self):
        # A copy: object.__getstate__ returns the instance's own __dict__.
        state = dict(super().__getstate__())
        state["_sk_dualhead_version"] = __version__
        if "network_" in state:
            # Saved from the CPU, so that a model trained on a GPU loads
            # where there is none.
            state["network_"] = network_state(state["network_"])
        return state

    def __setstate__(self, state):
        saved = state.pop("_sk_dualhead_version", "unknown")
        if saved != __version__:
            warnings.warn(
                f"This {type(self).__name__} was saved with sk_dualhead "
                f"version {saved} and is loaded with version {__version__}; "
                "it may predict differently or fail. Refit it with this "
                "version, or load it with the version it was saved with.",
                UserWarning,
            )
        if "network_" in state:
            device = state["device_"]
            if not device_available(device):
                warnings.warn(
                    f"This {type(self).__name__} was trained on {device!r}, "
                    "which this machine does not have; it is loaded on the CPU.",
                    UserWarning,
                )
                state["device_"] = device = "cpu"
            state["network_"] = load_network(state["network_"], device)
        super().__setstate__(state)

    def save(self, path):
        """Save the model to a file that :func:`sk_dualhead.load` reads without running code.

        The file (``.skdh``) holds the parameters, the fitted state and the
        weights, with SHA-256 hashes; it is written whole or not at all. See
        :doc:`/howto/sharing_models`.

        Parameters
        ----------
        path : str or path-like
            Where to write the model.

        Returns
        -------
        sha256 : str
            The SHA-256 of the file written, which ``sk_dualhead.load(path,
            sha256=...)`` can check where the file arrives.
        """
        return save(self, path)

    # -------------------------------------------------------------- predict

    def _log_proba(self, X):
        check_is_fitted(self)
        X = validate_input(self, X, reset=False)
        if self.preprocessor_ is not None:
            X = self.preprocessor_.transform(X)
        features = torch.from_numpy(as_float32(X))
        n_inputs = self.network_.n_continuous + len(self.network_.embeddings)
        if features.shape[1] != n_inputs:
            # Only a custom preprocessing can change width after fit.
            raise ValueError(
                f"The preprocessing turned X into {features.shape[1]} columns, "
                f"but the network was fitted on {n_inputs}; the preprocessing "
                "must give as many columns in transform as it did in fit."
            )
        with torch_threads(self.n_threads):
            log_probas = member_log_proba(
                self.network_,
                self.members_,
                features,
                predict_head=self.predict_head,
                prior_correction=self.prior_correction_,
            )
        # The networks' probabilities are averaged, not their logits: the
        # average of calibrated probabilities is no more over-confident than
        # its parts. For one network this is its own log_proba, bit for bit
        # (log(exp(0)) - log(1) adds exact zeros).
        log_proba = logsumexp(log_probas, axis=0) - np.log(len(log_probas))
        # A sharp calibration can push log-probabilities below -708, where
        # exp underflows to 0; clipped there, predict_log_proba stays equal
        # to log(predict_proba).
        return np.maximum(log_proba, np.log(np.finfo(np.float64).tiny))

    @Substitution(X=X_PREDICT)
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`.

        Parameters
        ----------
        {X}

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        return self._log_proba(X)

    @Substitution(X=X_PREDICT)
    def predict_proba(self, X):
        """Class probabilities, averaged over the networks.

        Parameters
        ----------
        {X}

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities (float64, rows summing to one), columns in the
            order of ``classes_``.
        """
        proba = np.exp(self._log_proba(X))
        return proba / proba.sum(axis=1, keepdims=True)

    @Substitution(X=X_PREDICT)
    def decision_function(self, X):
        """Confidence scores: log-odds for two classes, log-probabilities else.

        Parameters
        ----------
        {X}

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For binary problems the log-odds of ``classes_[1]``, which ranks
            samples exactly as ``predict_proba[:, 1]`` does.
        """
        log_proba = self._log_proba(X)
        if log_proba.shape[1] == 2:
            return log_proba[:, 1] - log_proba[:, 0]
        return log_proba

    @Substitution(X=X_PREDICT)
    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        {X}

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels from ``classes_``.
        """
        log_proba = self._log_proba(X)
        return self.classes_[np.argmax(log_proba, axis=1)]

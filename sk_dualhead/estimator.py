"""The public estimator: :class:`DualHeadClassifier`."""

import functools
import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import logsumexp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import compute_sample_weight
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    check_random_state,
    column_or_1d,
    validate_data,
)
from skorch.callbacks import GradientNormClipping
from skorch.helper import predefined_split

from ._engine import (
    PREDICT_HEADS,
    AcceleratedDualHeadNet,
    BestEpochEarlyStopping,
    DualHeadNet,
    EpochProgressBar,
    TensorBatches,
    TensorDataset,
    fused_adamw_available,
)
from .calibration import CALIBRATORS
from ._network import (
    ACTIVATIONS,
    NORMALIZATIONS,
    NUMERICAL_EMBEDDINGS,
    DualHeadNetwork,
)
from .losses import DualHeadLoss
from .preprocessing import TabularPreprocessor
from .strategies import (
    KNOBS,
    STRATEGIES,
    build_loss,
    choose_strategy,
    resolve_strategy,
    strategy_alpha,
)

__all__ = ["DualHeadClassifier"]

#: From this many rows on, ``n_networks="auto"`` trains one network, not five:
#: below it a network fits in seconds and its variance from seed and split is
#: what averaging removes; above it a fit takes minutes.
AUTO_ONE_NETWORK_ROWS = 10_000


def resolve_device(device):
    """Turn ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or ``"mps"`` into a checked name."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid device; use 'cpu', 'cuda', "
            "'cuda:N', 'mps' or 'auto'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available "
                "on this machine; use device='cpu' or device='auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) are visible."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} was requested but MPS is not available on "
            "this machine; use device='cpu' or device='auto'."
        )
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device={device!r} is not supported; use 'cpu', 'cuda', "
            "'cuda:N', 'mps' or 'auto'."
        )
    return str(resolved)


@contextmanager
def _torch_threads(n_threads):
    """Set torch's intra-op thread count for the duration of a call."""
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _seeded(seed, device):
    """Seed torch inside the block without touching the caller's RNG state."""
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


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


def _main_process_copy(rng):
    """The main process's ``rng``, in every process of a distributed run.

    Every process must hold out the same validation rows and shuffle with
    the same seed, even when ``random_state`` is None; a single process gets
    its own ``rng`` back.
    """
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([rng])[0]


def _accelerator_device(accelerator):
    """Name of the device an ``accelerate.Accelerator`` trains this process on."""
    device = accelerator.device
    # A run on several CPUs reports "cpu:0", a name torch cannot load onto.
    return "cpu" if device.type == "cpu" else str(device)


def _package_version():
    # Imported here: the package's __init__ imports this module.
    from . import __version__

    return __version__


class DualHeadClassifier(ClassifierMixin, BaseEstimator):
    """Two-headed neural network classifier for tabular data.

    A shared MLP trunk feeds two linear heads trained with different losses:
    the main head with focal loss, which concentrates on hard and rare
    examples, and the auxiliary head with label-smoothed cross-entropy, a
    steady, well-calibrated signal. A KL consistency term pulls the auxiliary
    head toward the (detached) main head. The combination is named by
    ``strategy`` and each of its parts can be overridden by the knobs below,
    so all of them can be tuned by :class:`~sklearn.model_selection.GridSearchCV`.

    Read more in the :ref:`User Guide <concepts>`.

    Parameters
    ----------
    strategy : str, default="balanced"
        Name of the loss strategy, a key of
        :data:`sk_dualhead.strategies.STRATEGIES`, or ``"auto"``. All use
        weights 0.7 / 0.25 / 0.05 for main, auxiliary and consistency terms.

        - ``"balanced"``: focal loss (``gamma=2``) on the main head,
          cross-entropy with label smoothing 0.15 on the auxiliary head.
        - ``"focal_smooth"`` (severe imbalance): both heads weigh classes by
          their effective number (``class_balance_beta=0.999``); main focal
          loss, auxiliary smoothing 0.1. The prior shift of the class
          weights is undone at prediction.
        - ``"confidence_aware"`` (probabilities must be accurate): main
          adaptive focal loss (FLSD-53), auxiliary smoothing 0.1 with a
          confidence penalty 0.1; post-hoc calibration even when
          ``calibration=None``.
        - ``"adversarial"`` (noisy data): half the main loss on FGSM inputs
          (``adversarial_epsilon=0.05``), auxiliary generalized
          cross-entropy (``noise_q=0.7``).
        - ``"double_focal"``: focal loss on both heads, the design note's
          rejected design, kept as a baseline.
        - ``"auto"``: chosen from the training data by
          :func:`~sk_dualhead.strategies.choose_strategy`: minority/majority
          ratio below 0.1 gives ``"focal_smooth"``; else
          ``calibrated_probabilities=True`` gives ``"confidence_aware"``;
          else noisy labels give ``"adversarial"``; else ``"balanced"``.

    hidden_sizes : tuple of int, default=(256, 256)
        Widths of the trunk's hidden layers.

    activation : {"relu", "gelu", "silu", "selu", "tanh"}, default="relu"
        Non-linearity of the trunk.

    dropout : float, default=0.3
        Dropout probability after each hidden layer. With
        ``weight_decay=1e-2`` it regularises the default network; on the
        quality benchmark (``benchmarks/quality.py``) this pair ranked above
        dropout 0.1 with weight decay 1e-4 on ROC AUC and average precision.

    normalization : {"batchnorm", "layernorm"} or None, default=None
        Normalisation after each hidden linear layer.

    numerical_embedding : {"periodic"} or None, default=None
        Embedding of the continuous input columns (scaled numerics, missing
        indicators, one-hot columns) before the trunk; categorical columns
        embedded by the preprocessing keep their own embeddings. ``None``
        feeds them as they are. ``"periodic"`` is PLR (Gorishniy et al.
        2022): per column, 16 learned frequencies ``c`` initialised from
        ``N(0, 0.03 ** 2)``, ``[cos(2 pi c x), sin(2 pi c x)]``, a linear
        layer of its own to 16 values and a ReLU
        (:data:`~sk_dualhead._network.NUMERICAL_EMBEDDINGS`). On the quality
        benchmark's five tables (3-fold out-of-fold, five runs each) it
        raised ROC AUC by 0.004 and average precision by 0.005 on average,
        mostly on pima, nwtco and lending_club (breast_cancer and pbc barely
        moved), and fits took about 1.4 times as long; a gain smaller than
        the spread between runs, so it is not the default.

    lr : float, default=1e-3
        Learning rate of the AdamW optimizer.

    weight_decay : float, default=1e-2
        Decoupled weight decay of AdamW (PyTorch's own default for AdamW).

    max_grad_norm : float, default=None
        Clip the L2 norm of all gradients together to this value before each
        step; ``None`` does not clip. A remedy when training diverges.

    max_epochs : int, default=200
        Maximum number of passes over the training data.

    batch_size : int or "auto", default="auto"
        Rows per gradient step; ``"auto"`` uses
        ``min(256, max(16, n_train // 8))``, about eight steps per epoch on
        small tables.

    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training data (stratified),
        stop when the validation log loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs and restore the weights of the best
        epoch. The log loss scored is that of the probabilities
        ``predict_proba`` would return: after ``calibration``, fitted anew
        to each epoch's held-out predictions. (The raw outputs of a focal
        head are under-confident and grow sharper with every epoch, so
        their log loss kept improving long after the ranking had begun to
        decay: on lending_club, ROC AUC 0.63 against 0.72.) When the data are too small to hold out at least one sample
        of every class, training falls back to ``max_epochs`` on all data.
        ``False`` trains exactly ``max_epochs`` epochs on all data.

    validation_fraction : float, default=0.15
        Share of the training data held out for early stopping.

    n_iter_no_change : int, default=10
        Epochs without improvement before training stops.

    tol : float, default=1e-4
        Minimum decrease of the validation log loss that counts as an
        improvement.

    n_networks : int or "auto", default="auto"
        Networks trained, each from its own seed on its own held-out split,
        with its own early stopping and calibration; ``predict_proba``
        averages their probabilities. ``"auto"`` trains 5 on fewer than
        10,000 rows and 1 on more. Averaging five networks costs five fits
        and, on the quality benchmark's tables (fewer than 10,000 rows,
        where one network's variance from seed and split is large), is what
        brings average precision, Brier score and log loss level with or
        ahead of logistic regression; one network ranked behind it. On
        large tables a fit costs minutes and varies less from seed to seed.
        Grid searches may use ``n_networks=1`` and refit the best settings
        with more.

    gamma : float or "adaptive", default=None
        Focusing parameter of the main head's focal loss; ``"adaptive"`` is
        FLSD-53 (gamma 5 where the true class has probability below 0.2,
        else 3); ``None`` keeps the strategy's value.

    label_smoothing : float, default=None
        Label smoothing of the auxiliary head's cross-entropy; ``None`` keeps
        the strategy's value.

    loss_weights : tuple of 3 floats, default=None
        ``(w_main, w_aux, w_consistency)``; ``None`` keeps the strategy's.

    class_balance_beta : float, default=None
        ``beta`` in ``[0, 1)`` of the class-balanced weights (Cui et al.
        2019) of both heads; ``None`` keeps the strategy's (only
        ``"focal_smooth"`` balances by default).

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
        Post-hoc calibration fitted, after training, on the log-probabilities
        of the held-out early-stopping split and applied by
        ``predict_proba``. ``"temperature"`` (Guo et al. 2017) keeps the
        predicted classes and rankings; ``"platt"`` (two classes only) also
        fits an intercept, so it keeps rankings but can move the decision
        threshold; ``"auto"`` is Platt for two classes and temperature for
        more. The default was chosen on the ablation benchmark
        (``docs/benchmarks/ablation.md``): both cut the ECE of focal-loss
        models sharply (nwtco 0.14 to 0.03, lending_club 0.13 to 0.008)
        without touching AUC or AP, and temperature matched or beat Platt
        on all 5 tables (mean ECE 0.061 vs 0.067); Platt's two parameters,
        fitted on a small held-out split that the network separates, push
        probabilities to extremes. Early stopping scores the calibrated
        probabilities, so this choice also sets when training stops. Without a held-out split
        (``early_stopping=False``, or data too small to split) nothing is
        calibrated and ``calibrator_`` is None: calibrating on the rows
        the network was trained on would fit its over-fitting, not undo it.

    calibrated_probabilities : bool, default=False
        Whether probabilities must be accurate; used by ``strategy="auto"``.

    noisy_labels : bool or "auto", default="auto"
        Whether the labels are noisy; used by ``strategy="auto"``.
        ``"auto"`` measures the out-of-fold disagreement of a logistic
        regression with the labels and calls them noisy above 0.2 (see
        :func:`~sk_dualhead.strategies.estimate_label_noise`).

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into ``sample_weight``.
        ``"balanced"`` uses ``n_samples / (n_classes * np.bincount(y))``.

    predict_head : {"main", "aux", "mean"}, default="mean"
        Head whose probabilities ``predict_proba`` returns (and whose log
        loss early stopping monitors); ``"mean"`` averages the two heads'
        probabilities, which on the quality benchmark ranked and
        calibrated better than the main head alone: the focal main head
        pushes probabilities toward 0.5, the label-smoothed head much less.

    preprocessing : "auto", None or transformer, default="auto"
        ``"auto"`` fits a :class:`~sk_dualhead.preprocessing.TabularPreprocessor`
        (imputation, robust scaling, one-hot and embedded categories); a
        transformer is cloned and fitted instead; ``None`` feeds numeric
        input to the network as it is.

    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (the
        best available), resolved when ``fit`` is called.

    accelerator : accelerate.Accelerator, default=None
        Train data-parallel with Hugging Face Accelerate (the ``[accelerate]``
        extra): in a run started by ``accelerate launch``, every process
        fits the same estimator on the same data, trains on its own share
        of every epoch and averages gradients with the others (see
        :ref:`the how-to <data-parallel>`). ``batch_size`` is then per
        process. The accelerator places the network and the data on
        ``accelerator.device``, and ``device`` is ignored. ``None`` trains
        in this process alone.

    n_threads : int, default=None
        Torch CPU threads used while fitting and predicting; ``None`` leaves
        torch's setting alone. Set it to 1 when many models are fitted in
        parallel, since oversubscribed torch threads slow each other down.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout, shuffling and the validation
        split. An int gives identical results from fit to fit on the CPU.

    verbose : int, default=0
        0 is silent; 1 prints a table of the loss terms every epoch; 2 and
        more show a tqdm progress bar over the epochs instead (tqdm comes
        with the ``[progress]`` extra).

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
        Number of networks trained (``n_networks`` resolved when ``"auto"``).

    nets_ : list of skorch.NeuralNet
        The fitted skorch nets, one per network; the ``module_`` of each is
        its PyTorch network and its ``history`` its per-epoch record.

    calibrators_ : list of (TemperatureScaling, PlattScaling or None)
        Each network's post-hoc calibration, fitted on its own held-out
        rows (``temperature_`` or ``slope_`` and ``intercept_``), or None
        when none was fitted.

    net_ : skorch.NeuralNet
        The first network's net, ``nets_[0]``, which the attributes below
        describe.

    history_ : skorch.History
        The first network's per-epoch record: ``train_loss``,
        ``train_main_loss``, ``train_aux_loss``, ``train_consistency_loss``,
        the same with the ``valid_`` prefix, ``valid_log_loss`` and ``dur``.

    n_epochs_ : int
        Number of epochs the first network ran.

    best_epoch_ : int
        The first network's epoch whose weights were kept (the last one
        without early stopping).

    device_ : str
        The device the model was trained on.

    strategy_ : str
        The strategy trained with (``strategy`` resolved when ``"auto"``).

    strategy_reason_ : str
        Why: the measured traits of the data under ``"auto"``.

    prior_correction_ : ndarray of shape (n_classes,) or None
        Added to both heads' logits at prediction to undo the prior shift of
        class-balanced weights, ``-log(alpha)``; None without them.

    calibrator_ : TemperatureScaling, PlattScaling or None
        The first network's calibration, ``calibrators_[0]``.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : Single-loss multilayer perceptron.
    sklearn.ensemble.HistGradientBoostingClassifier : Gradient boosted trees.

    Notes
    -----
    A failing ``fit`` (bad input, diverged training, Ctrl-C before the first
    epoch ends) raises and leaves a previously fitted model as it was.
    Training that produces a NaN or infinite loss stops with a ``ValueError``
    naming the epoch; lower ``lr`` or set ``max_grad_norm``. A Ctrl-C after at
    least one complete epoch ends ``fit`` with a warning and keeps the best
    epoch's weights (with early stopping) or the weights reached so far. The
    package version is saved with a pickled model, and loading it under
    another version warns. No file is written during ``fit``: early stopping
    keeps the best weights in memory.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sk_dualhead import DualHeadClassifier
    >>> X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    >>> clf = DualHeadClassifier(max_epochs=20, random_state=0).fit(X, y)
    >>> clf.predict_proba(X.iloc[:2]).shape
    (2, 2)
    >>> clf.score(X, y) > 0.9
    True
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
        "activation": [StrOptions(set(ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "normalization": [StrOptions({n for n in NORMALIZATIONS if n}), None],
        "numerical_embedding": [
            StrOptions({n for n in NUMERICAL_EMBEDDINGS if n}),
            None,
        ],
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
        numerical_embedding=None,
        lr=1e-3,
        weight_decay=1e-2,
        max_grad_norm=None,
        max_epochs=200,
        batch_size="auto",
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=10,
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
        """Fit the network to the training data.

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
        self._check_hyperparameters()
        X, y = self._validate_input(X, y, reset=True)
        y = self._encode_targets(y)
        if self.calibration == "platt" and len(self.classes_) > 2:
            raise ValueError(
                f"calibration='platt' needs 2 classes, got {len(self.classes_)}; "
                "use calibration='temperature'."
            )
        weights = self._sample_weights(X, y, sample_weight)
        rng = check_random_state(self.random_state)
        if self.accelerator is not None:
            rng = _main_process_copy(rng)
        self.n_networks_ = (
            (5 if len(y) < AUTO_ONE_NETWORK_ROWS else 1)
            if self.n_networks == "auto"
            else self.n_networks
        )
        # Every network draws its seed and its held-out rows up front, the
        # first exactly as a single network does.
        draws = [
            (int(rng.randint(np.iinfo(np.int32).max)), self._split(y, rng))
            for _ in range(self.n_networks_)
        ]

        preprocessor = self._make_preprocessor()
        if preprocessor is not None:
            X = preprocessor.fit_transform(X)
        features = self._as_float32(X)
        self.device_ = (
            resolve_device(self.device)
            if self.accelerator is None
            else _accelerator_device(self.accelerator)
        )
        self.preprocessor_ = preprocessor
        self._resolve_strategy(y, features, seed=draws[0][0])
        # Counted over all rows, so that every network balances the classes
        # alike: its held-out rows are a stratified sample of them.
        class_counts = np.bincount(y, minlength=len(self.classes_))
        alpha = strategy_alpha(self._strategy_entry(), class_counts)
        self.prior_correction_ = None if alpha is None else -np.log(alpha.double().numpy())

        # The data move to the device once, for all the networks.
        tensors = (
            torch.from_numpy(features).to(self.device_),
            torch.from_numpy(y).to(self.device_),
        )
        self.nets_, self.calibrators_ = [], []
        for index, (seed, (train, valid)) in enumerate(draws):
            if self.verbose == 1 and self.n_networks_ > 1:
                # Under an accelerator, from the main process alone.
                (print if self.accelerator is None else self.accelerator.print)(
                    f"Network {index + 1} of {self.n_networks_}"
                )
            net = self._fit_network(tensors, weights, train, valid, seed, class_counts)
            if net is not None:
                self.nets_.append(net)
                self.calibrators_.append(
                    self._fit_calibrator(net, tensors[0], y, weights, valid)
                )
            if net is None or net.interrupted_:
                self._keep_interrupted_training()
                break

        self.net_, self.calibrator_ = self.nets_[0], self.calibrators_[0]
        self.history_ = self.net_.history
        self.n_epochs_ = len(self.history_)
        stopper = dict(self.net_.callbacks_).get("early_stopping")
        self.best_epoch_ = stopper.best_epoch_ if stopper else self.n_epochs_
        return self

    def _fit_network(self, tensors, weights, train, valid, seed, class_counts):
        """Train one network; None when it was interrupted in its first epoch."""
        # Weights are scaled to average one over the rows trained on, so the
        # learning rate means the same with and without them.
        weights = weights / weights[train].mean()
        datasets = self._tensor_datasets(tensors, weights, train, valid)
        # Calibrating needs held-out rows: calibrating on the rows the
        # network was trained on would fit its over-fitting, not undo it.
        calibration = (
            self._calibration_method(self._strategy_entry()) if valid is not None else None
        )
        net = self._make_net(
            tensors[0], len(datasets[0]), datasets[1], class_counts, calibration
        )
        with _torch_threads(self.n_threads), _seeded(seed, self.device_):
            net.fit(datasets[0], y=None)
        if net.interrupted_:
            history = net.history
            # An epoch is complete once its end was timed; a partial row
            # would break per-epoch curves.
            while history and "dur" not in history[-1]:
                del history[-1]
            if not history:
                return None
        # The accelerator placed the module itself (skorch's device=None); the
        # fitted net records where, so that it predicts, pickles and loads
        # like one fitted without an accelerator.
        net.device = self.device_
        # The split holds the held-out rows; a saved model must not carry data.
        net.train_split = None
        return net

    def _fit_calibrator(self, net, features, y, weights, valid):
        """The network's calibration, fitted on its held-out rows, or None."""
        if net.calibration is None:
            return None
        with _torch_threads(self.n_threads):
            held_out = self._uncalibrated_log_proba(net, features[valid])
        return CALIBRATORS[net.calibration]().fit(held_out, y[valid], weights[valid])

    def _calibration_method(self, strategy):
        """The calibrator's name in ``CALIBRATORS``, or None."""
        method = self.calibration
        if method is None and strategy.always_calibrate:
            method = "temperature"
        if method == "auto":
            method = "platt" if len(self.classes_) == 2 else "temperature"
        return method

    def _keep_interrupted_training(self):
        """Keep what a Ctrl-C left of training, with a warning.

        A network is kept once it has completed an epoch; with none kept,
        the KeyboardInterrupt is raised again.
        """
        if not self.nets_:
            raise KeyboardInterrupt
        net = self.nets_[-1]
        if net.interrupted_:
            stopper = dict(net.callbacks_).get("early_stopping")
            kept = (
                f"the weights of its best epoch so far, epoch {stopper.best_epoch_}"
                if stopper
                else "the weights reached when it was interrupted"
            )
            what = (
                f"after {len(net.history)} complete epoch(s) of max_epochs="
                f"{self.max_epochs}; the model keeps {kept}"
            )
        else:
            what = f"in the first epoch of network {len(self.nets_) + 1}"
        if self.n_networks_ > 1:
            what += f", and {len(self.nets_)} of n_networks={self.n_networks_} networks"
        warnings.warn(
            f"Training was interrupted (KeyboardInterrupt) {what}.", UserWarning
        )

    def _knobs(self):
        return {knob: getattr(self, knob) for knob in KNOBS}

    def _strategy_entry(self):
        return resolve_strategy(self.strategy_, **self._knobs())

    def _resolve_strategy(self, y, features, seed):
        """Set ``strategy_`` and ``strategy_reason_``, running the auto rule."""
        if self.strategy != "auto":
            self.strategy_ = self.strategy
            self.strategy_reason_ = f"strategy={self.strategy!r} was given"
            return
        self.strategy_, self.strategy_reason_ = choose_strategy(
            y,
            calibrated_probabilities=self.calibrated_probabilities,
            noisy_labels=self.noisy_labels,
            X=features,
            random_state=seed,
        )

    def _check_hyperparameters(self):
        """Checks the declarative constraints cannot express."""
        if not all(
            isinstance(size, Integral) and size >= 1 for size in self.hidden_sizes
        ):
            raise ValueError(
                "hidden_sizes must be a tuple of positive ints, got "
                f"{self.hidden_sizes!r}."
            )
        if self.loss_weights is not None:
            weights = np.asarray(self.loss_weights, dtype=float)
            if weights.shape != (3,) or not np.all(np.isfinite(weights)):
                raise ValueError(
                    "loss_weights must be 3 finite numbers (w_main, w_aux, "
                    f"w_consistency), got {self.loss_weights!r}."
                )
            if np.any(weights < 0) or weights[:2].sum() == 0:
                raise ValueError(
                    "loss_weights must be non-negative and give weight to at "
                    f"least one head, got {self.loss_weights!r}."
                )

    def _validate_input(self, X, y=None, *, reset):
        """Validate X (and y at fit time) the way scikit-learn does.

        DataFrames go to the preprocessor as they are, after their column
        names are checked; everything else is checked as a numeric matrix.
        """
        if reset and y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the "
                "target y is None."
            )
        if isinstance(X, pd.DataFrame) and X.columns.duplicated().any():
            duplicated = X.columns[X.columns.duplicated()].unique()
            raise ValueError(
                "X has duplicate column names: "
                f"{', '.join(map(repr, duplicated))}; give every column a "
                "unique name."
            )
        dtype = getattr(X, "dtype", None)
        if isinstance(dtype, np.dtype) and dtype.kind == "c":
            # check_array would say so too, but prints the whole array.
            raise ValueError(
                f"Complex data not supported: X has dtype {dtype}; pass the "
                "real part or the magnitude (X.real or abs(X)) instead."
            )
        is_frame = isinstance(X, pd.DataFrame) and self.preprocessing is not None
        if isinstance(X, pd.DataFrame) and not is_frame:
            self._check_numeric_columns(X)
        if is_frame:
            validate_data(self, X, skip_check_array=True, reset=reset)
            if len(X) == 0:
                raise ValueError(
                    f"Found array with 0 sample(s) (shape={X.shape}) while a "
                    "minimum of 1 is required."
                )
        else:
            try:
                X = validate_data(
                    self,
                    X,
                    reset=reset,
                    accept_sparse=True,
                    dtype=[np.float64, np.float32],
                    ensure_all_finite=(
                        "allow-nan" if self.preprocessing is not None else True
                    ),
                )
            except ValueError as exc:
                if dtype != object:
                    raise
                raise ValueError(
                    f"X is an object array that holds values other than "
                    f"numbers ({exc}). Pass a pandas DataFrame instead: "
                    "preprocessing='auto' encodes its string, object and "
                    "category columns."
                ) from exc
            if sp.issparse(X):
                X = X.toarray()
        if y is None:
            return X
        y = column_or_1d(y, warn=True)
        if len(y) != X.shape[0]:
            raise ValueError(
                f"X has {X.shape[0]} samples but y has {len(y)}; they must "
                "have the same length."
            )
        if pd.isna(y).any():
            raise ValueError(
                "Input y contains NaN or None; remove or label those samples."
            )
        if y.dtype.kind == "f" and np.isinf(y).any():
            raise ValueError("Input y contains infinity; class labels must be finite.")
        check_classification_targets(y)
        return X, y

    def _check_numeric_columns(self, X):
        """Name the DataFrame columns that ``preprocessing=None`` cannot take."""
        bad = [
            name
            for name, dtype in X.dtypes.items()
            if not pd.api.types.is_numeric_dtype(dtype)
        ]
        if bad:
            raise ValueError(
                f"Column(s) {', '.join(map(repr, bad))} of X are not numeric, "
                "but preprocessing=None feeds X to the network as it is; use "
                "preprocessing='auto', which encodes them, or convert them to "
                "numbers."
            )

    def _encode_targets(self, y):
        encoder = LabelEncoder()
        encoded = encoder.fit_transform(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            (only,) = self.classes_.tolist()
            raise ValueError(
                f"The training data ({len(y)} sample(s)) contain 1 class; a "
                "classifier needs samples of at least 2 classes, got only "
                f"{only!r}."
            )
        return encoded.astype(np.int64)

    def _sample_weights(self, X, y, sample_weight):
        weights = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if self.class_weight is not None:
            weights = weights * compute_sample_weight(
                self.class_weight, self.classes_[y]
            )
        weighted_classes = np.unique(y[weights > 0])
        if len(weighted_classes) < 2:
            raise ValueError(
                "Only one class has positive sample_weight (times "
                "class_weight); a classifier needs at least 2 classes with "
                "weight."
            )
        return weights

    def _tensor_datasets(self, tensors, weights, train, valid):
        """The training and held-out datasets (None: no held-out rows).

        Both index into the same feature and target ``tensors``, already on
        the device; weights that are all one are dropped.
        """
        X, y = tensors
        weights = (
            None
            if np.all(weights == 1)
            else torch.from_numpy(weights.astype(np.float32)).to(self.device_)
        )
        return [
            None
            if rows is None
            else TensorDataset(
                X,
                y,
                weights,
                rows=None
                if isinstance(rows, slice)
                else torch.from_numpy(rows).to(self.device_),
            )
            for rows in (train, valid)
        ]

    def _split(self, y, rng):
        """Rows to train on and rows to validate on (None: no validation).

        All rows are ``slice(None)``, which needs no index to train through.
        """
        if not self.early_stopping:
            return slice(None), None
        n_classes = len(self.classes_)
        n_valid = int(np.ceil(self.validation_fraction * len(y)))
        if (
            np.bincount(y).min() < 2
            or n_valid < n_classes
            or len(y) - n_valid < n_classes
        ):
            return slice(None), None
        return train_test_split(
            np.arange(len(y)), test_size=n_valid, stratify=y, random_state=rng
        )

    def _make_preprocessor(self):
        if self.preprocessing is None:
            return None
        if self.preprocessing == "auto":
            return TabularPreprocessor()
        return clone(self.preprocessing)

    @staticmethod
    def _as_float32(X):
        if sp.issparse(X):
            X = X.toarray()
        # Values beyond the float32 range become inf, reported just below.
        with np.errstate(over="ignore"):
            features = np.ascontiguousarray(X, dtype=np.float32)
        # A float64 sum of float32 values cannot overflow, so it is finite
        # exactly when every value is; unlike np.isfinite(features) it
        # allocates no mask as large as the data.
        if not np.isfinite(features.sum(dtype=np.float64)):
            raise ValueError(
                "The input to the network contains NaN or values too large "
                "for float32 (beyond 3.4e38); use preprocessing='auto', which "
                "imputes and rescales them, or rescale the data."
            )
        return features

    def _make_net(self, features, n_train, valid_dataset, class_counts, calibration):
        preprocessor = self.preprocessor_
        cardinalities = tuple(getattr(preprocessor, "category_cardinalities_", ()))
        n_continuous = features.shape[1] - len(cardinalities)
        # About eight steps per epoch on small tables, 256 rows on large ones.
        batch_size = (
            min(256, max(16, n_train // 8))
            if self.batch_size == "auto"
            else self.batch_size
        )
        loss = build_loss(
            self.strategy_,
            loss_weights=self.loss_weights,
            class_counts=class_counts,
            **self._knobs(),
        )
        callbacks = []
        if self.max_grad_norm is not None:
            callbacks.append(
                ("gradient_clipping", GradientNormClipping(self.max_grad_norm))
            )
        if valid_dataset is not None:
            callbacks.append(
                (
                    "early_stopping",
                    BestEpochEarlyStopping(
                        monitor="valid_log_loss",
                        patience=self.n_iter_no_change,
                        threshold=self.tol,
                        threshold_mode="abs",
                        load_best=True,
                    ),
                )
            )
        if self.verbose >= 2:
            callbacks.append(("progress_bar", EpochProgressBar()))
        net_class, device, accelerated = DualHeadNet, self.device_, {}
        if self.accelerator is not None:
            n_processes = self.accelerator.num_processes
            if n_train < n_processes:
                raise ValueError(
                    f"{n_train} training rows cannot be shared among "
                    f"{n_processes} processes; train on fewer processes."
                )
            # skorch leaves device placement to the accelerator with device=None.
            net_class, device = AcceleratedDualHeadNet, None
            accelerated = {
                "accelerator": self.accelerator,
                "iterator_train__num_processes": n_processes,
                "iterator_train__process_index": self.accelerator.process_index,
                # Only the main process prints the table; skorch silences a
                # sink that is print itself when verbose=0.
                "callbacks__print_log__sink": (
                    self.accelerator.print if self.verbose == 1 else print
                ),
            }
        return net_class(
            module=DualHeadNetwork,
            module__n_continuous=n_continuous,
            module__n_classes=len(self.classes_),
            module__hidden_sizes=tuple(self.hidden_sizes),
            module__activation=self.activation,
            module__dropout=self.dropout,
            module__normalization=self.normalization,
            module__category_cardinalities=cardinalities,
            module__numerical_embedding=self.numerical_embedding,
            criterion=DualHeadLoss,
            criterion__main_loss=loss.main_loss,
            criterion__aux_loss=loss.aux_loss,
            criterion__weights=loss.weights,
            optimizer=torch.optim.AdamW,
            optimizer__weight_decay=self.weight_decay,
            optimizer__fused=fused_adamw_available(self.device_) or None,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=batch_size,
            iterator_train=TensorBatches,
            iterator_train__shuffle=True,
            iterator_valid=TensorBatches,
            train_split=predefined_split(valid_dataset) if valid_dataset is not None else None,
            callbacks=callbacks,
            predict_head=self.predict_head,
            prior_correction=(
                None if self.prior_correction_ is None else tuple(self.prior_correction_)
            ),
            calibration=calibration,
            adversarial_epsilon=self._strategy_entry().adversarial_epsilon,
            device=device,
            # skorch's per-epoch table is the verbose=1 output only.
            verbose=int(self.verbose == 1),
            **accelerated,
        )

    # ---------------------------------------------------------- persistence

    def __getstate__(self):
        state = super().__getstate__()
        state["_sk_dualhead_version"] = _package_version()
        return state

    def __setstate__(self, state):
        saved = state.pop("_sk_dualhead_version", "unknown")
        if saved != _package_version():
            warnings.warn(
                f"This {type(self).__name__} was saved with sk_dualhead "
                f"version {saved} and is loaded with version "
                f"{_package_version()}; it may predict differently or fail. "
                "Refit it with this version, or load it with the version it "
                "was saved with.",
                UserWarning,
            )
        super().__setstate__(state)

    # -------------------------------------------------------------- predict

    def _uncalibrated_log_proba(self, net, features):
        """A network's log-probabilities, prior-corrected, not calibrated."""
        logits = net.predict_logits(features, heads=PREDICT_HEADS[self.predict_head])
        return net.predicted_log_proba(*logits).numpy()

    def _log_proba(self, X):
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        if self.preprocessor_ is not None:
            X = self.preprocessor_.transform(X)
        features = torch.from_numpy(self._as_float32(X))
        n_inputs = self.net_.module__n_continuous + len(
            self.net_.module__category_cardinalities
        )
        if features.shape[1] != n_inputs:
            # Only a custom preprocessing can change width after fit.
            raise ValueError(
                f"The preprocessing turned X into {features.shape[1]} columns, "
                f"but the network was fitted on {n_inputs}; the preprocessing "
                "must give as many columns in transform as it did in fit."
            )
        log_probas = []
        with _torch_threads(self.n_threads):
            for net, calibrator in zip(self.nets_, self.calibrators_):
                log_proba = self._uncalibrated_log_proba(net, features)
                if calibrator is not None:
                    log_proba = calibrator.transform(log_proba)
                log_probas.append(log_proba)
        # The networks' probabilities are averaged, not their logits: the
        # average of calibrated probabilities is no more over-confident than
        # its parts. For one network this is its own log_proba, bit for bit
        # (log(exp(0)) - log(1) adds exact zeros).
        log_proba = logsumexp(log_probas, axis=0) - np.log(len(log_probas))
        # A sharp calibration can push log-probabilities below -708, where
        # exp underflows to 0; clipped there, predict_log_proba stays equal
        # to log(predict_proba).
        return np.maximum(log_proba, np.log(np.finfo(np.float64).tiny))

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        return self._log_proba(X)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities (float64, rows summing to one), columns in the
            order of ``classes_``.
        """
        proba = np.exp(self._log_proba(X))
        return proba / proba.sum(axis=1, keepdims=True)

    def decision_function(self, X):
        """Confidence scores: log-odds for two classes, log-probabilities else.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

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

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels from ``classes_``.
        """
        log_proba = self._log_proba(X)
        return self.classes_[np.argmax(log_proba, axis=1)]

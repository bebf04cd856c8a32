"""The private training engine behind :class:`~sk_dualhead.DualHeadClassifier`.

The estimator hands it a float32 feature matrix, encoded targets, sample
weights, each member's held-out rows and a :class:`TrainingConfig`, and gets
back the fitted :class:`~sk_dualhead._network.PackedDualHeadNetwork` and one
:class:`Member` record per member (:func:`fit_members`); it predicts through
:func:`member_log_proba`. Nothing else of this module is the estimator's
business.

Training runs in a skorch net (:class:`PackedNet`), our training loop and
callback system. skorch's defaults feed a network through a per-row
``Dataset`` and a ``DataLoader`` that collates rows back into batches; on
tabular data that costs more than the network itself. Here the data is held
as whole tensors, moved to the device once, and batches are slices of them.
All members see every batch: a member's loss is masked by its own training
rows, so each keeps its own held-out rows, its own early stopping and its
own calibration. A member that stops is dropped from the network, its best
weights kept aside, so that the others train on without computing it. The
loss terms are summed on the device and read back once per epoch, so a GPU
is not stalled by a host synchronisation per batch.
"""

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer, PrintLog
from skorch.dataset import unpack_data
from skorch.helper import predefined_split
from skorch.hf import AccelerateMixin

from ._network import (
    ACTIVATIONS,
    HEAD_SLICES,
    NORMALIZATIONS,
    NUMERICAL_EMBEDDINGS,
    InferencePass,
    PackedDualHeadNetwork,
)
from .calibration import CALIBRATORS, weighted_nll
from .losses import DualHeadLoss

__all__ = [
    "NETWORK_OPTIONS",
    "Member",
    "TrainingConfig",
    "fit_members",
    "member_log_proba",
]

#: The names the network's options take, for the estimator's constraints.
NETWORK_OPTIONS = {
    "activation": set(ACTIVATIONS),
    "normalization": {name for name in NORMALIZATIONS if name},
    "numerical_embedding": {name for name in NUMERICAL_EMBEDDINGS if name},
}

#: Rows per forward pass at prediction time (the last chunk padded to it, see
#: :class:`~sk_dualhead._network.InferencePass`): large chunks amortise the
#: per-call overhead; 1,024 was the fastest of 256 to 8,192 on the CPU.
PREDICT_BATCH_SIZE = 1024


@dataclass(frozen=True)
class Member:
    """One member of a fitted ensemble.

    Attributes
    ----------
    calibrator : TemperatureScaling, PlattScaling or None
        Fitted on the member's own held-out rows, at its best epoch; None
        without held-out rows or calibration.
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_main_loss``,
        ``train_aux_loss``, ``train_consistency_loss``, the same with the
        ``valid_`` prefix, ``valid_log_loss`` (after calibration) and
        ``dur`` (seconds of the epoch, all members together).
    best_epoch : int
        Epoch whose weights the member kept (the last one without early
        stopping).
    n_epochs : int
        Epochs the member trained.
    valid_rows : ndarray of int or None
        The member's held-out rows, as positions in the training data.
    """

    calibrator: object
    history: list
    best_epoch: int
    n_epochs: int
    valid_rows: object


@dataclass(frozen=True)
class TrainingConfig:
    """Everything :func:`fit_members` needs to know, resolved once per fit.

    ``network`` holds the keyword arguments of
    :class:`~sk_dualhead._network.PackedDualHeadNetwork` but ``n_members``;
    ``strategy`` is the resolved :class:`~sk_dualhead.strategies.Strategy`
    and ``class_weights`` its weights of the classes (float64, or None);
    ``prior_correction`` is added to the logits before the softmax (float64,
    or None); ``calibration`` is a key of
    :data:`~sk_dualhead.calibration.CALIBRATORS` or None. The others are the
    estimator's parameters of the same names, ``batch_size`` resolved.
    """

    network: dict
    strategy: object
    class_weights: object
    calibration: object
    predict_head: str
    prior_correction: object
    lr: float
    weight_decay: float
    max_grad_norm: object
    max_epochs: int
    batch_size: object
    n_iter_no_change: int
    tol: float
    device: str
    accelerator: object = None
    n_threads: object = None
    verbose: int = 0


# ------------------------------------------------------------------- tools


@contextmanager
def torch_threads(n_threads):
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


@lru_cache
def fused_adamw_available(device):
    """Whether this torch has a fused AdamW step for ``device``.

    The fused step updates each parameter in one kernel instead of a dozen
    elementwise ones; on the CPU (torch >= 2.4) it is several times faster
    than the default step, which takes a good part of a small network's
    training time.
    """
    param = torch.zeros(1, device=device, requires_grad=True)
    param.grad = torch.zeros_like(param)
    try:
        torch.optim.AdamW([param], fused=True).step()
    except RuntimeError:
        return False
    return True


def head_log_proba(logits, prior_correction=None):
    """Log-probabilities from the logits of the heads predicted with, per member.

    ``logits`` holds one head's logits or two; ``prior_correction`` (a
    tensor of shape ``(n_classes,)``) is added to them first. Two heads'
    probabilities are averaged, not their logits: an average of
    probabilities is itself a probability and is never more over-confident
    than its parts.
    """
    if prior_correction is not None:
        logits = [z + prior_correction.to(z.device, z.dtype) for z in logits]
    log_probas = [F.log_softmax(z, dim=-1) for z in logits]
    if len(log_probas) == 1:
        return log_probas[0]
    return torch.logsumexp(torch.stack(log_probas), dim=0) - math.log(len(log_probas))


def _take(tensor, i, dim=0):
    """``tensor[i]`` along ``dim``, by ``index_select`` for a 1-D index tensor.

    On the CPU ``index_select`` gathers a batch of 256 rows some 2.5 times
    faster than advanced indexing (40 against 115 microseconds on 50
    columns), every training step.
    """
    if isinstance(i, torch.Tensor) and i.dim() == 1:
        return tensor.index_select(dim, i)
    return tensor[(slice(None),) * dim + (i,)]


class TensorDataset(torch.utils.data.Dataset):
    """Rows of whole tensors of features and targets, each member's own.

    ``rows``, ``(n_members, n)``, holds each member's rows of ``X`` and
    ``y``, picked out when the dataset is indexed, so the training and the
    held-out datasets share one feature tensor instead of each holding a
    copy of their rows: on a large table the copies would double the memory
    a fit needs. ``rows=None`` stands for all rows, shared by the members.
    ``member_weight`` is ``(n_members, len(self))``: each member's weight of
    each of its rows; ``None`` stands for weights that are all one: the
    losses then skip the multiplications by one, which are exact, so
    nothing but the time changes.

    Indexing with a slice or an index tensor of positions within the
    dataset returns ``(features, (targets, weights))``: features
    ``(n_members, n, n_columns)`` and targets ``(n_members, n)`` with
    ``rows``, ``(n, n_columns)`` and ``(n,)`` shared without.
    """

    def __init__(self, X, y, member_weight=None, rows=None):
        self.X = X
        self.y = y
        self.member_weight = member_weight
        self.rows = rows

    def __len__(self):
        return len(self.X) if self.rows is None else self.rows.shape[1]

    def __getitem__(self, i):
        weight = None if self.member_weight is None else _take(self.member_weight, i, 1)
        if self.rows is None:
            return _take(self.X, i), (_take(self.y, i), weight)
        rows = _take(self.rows, i, 1)
        flat = rows.reshape(-1)
        X = self.X.index_select(0, flat).view(*rows.shape, -1)
        return X, (self.y.index_select(0, flat).view(rows.shape), weight)


class TensorBatches:
    """Batches sliced from a :class:`TensorDataset`, shuffled or in order.

    An epoch's rows fill as few batches of at most ``batch_size`` rows as
    they can, of sizes that differ by one at most: a short last batch would
    take a whole step on a few rows (fewer than eight with
    ``batch_size="auto"``), and batch normalisation would see a batch of
    one.

    With ``num_processes`` above one (data-parallel training), process
    ``process_index`` takes every ``num_processes``-th row of the epoch's
    order, starting at its index; like
    :class:`~torch.utils.data.DistributedSampler` with ``drop_last=True``,
    the last ``len(dataset) % num_processes`` rows of the order are left out
    of that epoch, so that every process takes as many batches of the same
    sizes and the gradient all-reduce of every step has all of them. The
    processes must draw the same order: they shuffle with the same seed.
    """

    def __init__(
        self, dataset, batch_size, shuffle=False, num_processes=1, process_index=0
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.num_processes = num_processes
        self.process_index = process_index

    def __len__(self):
        return len(self._bounds())

    def _bounds(self):
        n = len(self.dataset) // self.num_processes
        n_batches = -(-n // self.batch_size)
        stops = [n * (b + 1) // n_batches for b in range(n_batches)]
        return list(zip([0] + stops[:-1], stops))

    def __iter__(self):
        data = self.dataset
        order = (
            torch.randperm(len(data), device=data.X.device) if self.shuffle else None
        )
        step, first = self.num_processes, self.process_index
        for start, stop in self._bounds():
            # Rows start..stop of this process's share, every step-th row.
            rows = slice(first + start * step, first + stop * step, step)
            yield data[rows if order is None else order[rows]]


def _unwrapped(module):
    """The network inside a DistributedDataParallel wrapper, or the module itself."""
    return getattr(module, "module", module)


# --------------------------------------------------------------- callbacks


class StopTraining(KeyboardInterrupt):
    """Early stopping's signal to end training.

    skorch ends training by raising :class:`KeyboardInterrupt`, the same
    exception as a user's Ctrl-C; a subclass tells the two apart.
    """


class MemberEarlyStopping(Callback):
    """Early stopping of each member on its own calibrated held-out log loss.

    A member whose ``valid_log_loss`` has not improved by ``tol`` for
    ``patience`` epochs stops: its best weights are kept aside and the
    others train on. Training ends when every member has stopped; then, or
    when it ends otherwise, every member gets its best weights back. The
    calibrator fitted at a member's best epoch is kept as its calibrator: it
    was fitted to the very predictions those weights make.

    Attributes
    ----------
    best_epoch_, stopped_epoch_ : ndarray of int
        Per member, the best epoch and the epoch it stopped at (0: it never
        stopped).
    best_calibrator_ : list
        Per member, the calibrator of its best epoch.
    """

    def __init__(self, patience, tol):
        self.patience = patience
        self.tol = tol

    def on_train_begin(self, net, **kwargs):
        n_members = net.n_members
        self.best_loss_ = np.full(n_members, np.inf)
        self.best_epoch_ = np.zeros(n_members, dtype=int)
        self.stopped_epoch_ = np.zeros(n_members, dtype=int)
        self.misses_ = np.zeros(n_members, dtype=int)
        self.best_calibrator_ = [None] * n_members
        net.snapshot_members()

    def on_epoch_end(self, net, **kwargs):
        losses = np.asarray(net.history[-1, "valid_log_loss_members"], dtype=float)
        active = self.stopped_epoch_ == 0
        epoch = len(net.history)
        improved = np.flatnonzero(active & (losses < self.best_loss_ - self.tol))
        for member in improved:
            self.best_loss_[member] = losses[member]
            self.best_epoch_[member] = epoch
            self.best_calibrator_[member] = net.epoch_calibrators_[member]
        net.snapshot_members(improved)
        self.misses_[active] += 1
        self.misses_[improved] = 0
        finished = np.flatnonzero(active & (self.misses_ >= self.patience))
        if len(finished):
            self.stopped_epoch_[finished] = epoch
            net.stop_members(finished)
        if (self.stopped_epoch_ > 0).all():
            raise StopTraining

    def on_train_end(self, net, **kwargs):
        net.restore_best_weights()


class MemberGradientNormClipping(Callback):
    """Clip each member's gradient to an L2 norm of at most ``max_norm``.

    Every parameter holds the members along its first dimension; each
    member's norm is taken over its own slices of all of them, so clipping
    one member leaves the others' gradients alone.
    """

    def __init__(self, max_norm):
        self.max_norm = max_norm

    def on_grad_computed(self, net, named_parameters, **kwargs):
        grads = [p.grad for _, p in named_parameters if p.grad is not None]
        squares = torch.stack([g.flatten(1).pow(2).sum(dim=1) for g in grads])
        scale = (self.max_norm / (squares.sum(dim=0).sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))


class EpochProgressBar(Callback):
    """One tqdm bar over the epochs, showing the latest losses.

    skorch's own ``ProgressBar`` draws a bar of batches for every epoch;
    batches here are few and fast, so one bar for the whole fit says more.
    """

    def on_train_begin(self, net, **kwargs):
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:
            raise ImportError(
                "verbose=2 draws a progress bar with tqdm; install it with "
                "pip install 'sk-dualhead[progress]', or use verbose=1."
            ) from exc
        self.bar_ = tqdm(total=net.max_epochs, unit="epoch", leave=True)

    def on_epoch_end(self, net, **kwargs):
        self._show(net)

    def on_train_end(self, net, **kwargs):
        # Early stopping ends the last epoch before this callback's
        # on_epoch_end runs; catch up, then leave the bar where it stopped.
        self._show(net)
        self.bar_.close()

    def _show(self, net):
        if not net.history:
            return
        row = net.history[-1]
        shown = ("train_loss", "valid_loss", "valid_log_loss")
        self.bar_.set_postfix(
            {name: f"{row[name]:.4f}" for name in shown if name in row}, refresh=False
        )
        self.bar_.update(len(net.history) - self.bar_.n)


# --------------------------------------------------------------- the net


#: Keys of the per-member lists in the net's history; the printed table and
#: the progress bar show the means over the members still training.
_MEMBER_SUFFIX = "_members"


class PackedNet(NeuralNet):
    """skorch net training a :class:`PackedDualHeadNetwork` with a :class:`DualHeadLoss`.

    Parameters
    ----------
    config : TrainingConfig
        The strategy, the prediction head, the prior correction and the
        calibration.
    valid_calibration : tuple or None
        ``(target, weights)`` of the held-out dataset, on the CPU, each
        ``(n_members, n_valid)``: each member's encoded targets and the
        weights its calibrator fits with (None: all one).
    **kwargs
        Passed to :class:`skorch.NeuralNet`.
    """

    def __init__(self, *args, config, valid_calibration=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.config = config
        self.valid_calibration = valid_calibration
        correction = config.prior_correction
        self.prior_correction_ = None if correction is None else torch.from_numpy(correction)
        self.predicted_heads_ = slice(*HEAD_SLICES[config.predict_head])

    @property
    def n_members(self):
        return self.module__n_members

    def get_default_callbacks(self):
        # Loss terms are recorded per epoch by run_single_epoch, so skorch's
        # per-batch PassthroughScoring callbacks are not needed.
        return [
            ("epoch_timer", EpochTimer()),
            ("print_log", PrintLog(keys_ignored=self._member_keys())),
        ]

    @staticmethod
    def _member_keys():
        return [
            f"{prefix}_{name}{_MEMBER_SUFFIX}"
            for prefix in ("train", "valid")
            for name in DualHeadLoss.term_names + ("log_loss",)
        ]

    # ---------------------------------------------------- member state

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.active_ = np.ones(self.n_members, dtype=bool)
        # members_: the numbers of the members in the network, in order;
        # kept_: the same as an index tensor once some were dropped.
        self.members_ = np.arange(self.n_members)
        self.kept_ = None
        self.best_state_ = None

    def _member_tensors(self):
        """Every parameter and buffer; each has the members first."""
        return _unwrapped(self.module_).state_dict(keep_vars=True)

    @torch.no_grad()
    def snapshot_members(self, members=None):
        """Keep a copy of these members' weights (all: a first copy of all)."""
        tensors = self._member_tensors()
        if members is None:
            self.best_state_ = {name: t.detach().clone() for name, t in tensors.items()}
            return
        if not len(members):
            return
        positions = np.searchsorted(self.members_, members)
        for name, tensor in tensors.items():
            index = torch.as_tensor(members, device=tensor.device)
            taken = tensor.index_select(0, torch.as_tensor(positions, device=tensor.device))
            self.best_state_[name].index_copy_(0, index, taken)

    @torch.no_grad()
    def restore_best_weights(self):
        """Give every member its kept weights, in a network of all members again."""
        if self.best_state_ is None:
            return
        module = _unwrapped(self.module_)
        if len(self.members_) < self.n_members:
            device = module.heads.weight.device
            self.module_ = load_network((module.init_kwargs, self.best_state_), device)
        else:
            module.load_state_dict(self.best_state_)

    def stop_members(self, members):
        """Stop training these members: drop them from the network.

        Their weights of their best epoch are in ``best_state_``; the
        optimizer's state of the others is sliced with their parameters.
        """
        self.active_[members] = False
        positions = np.flatnonzero(self.active_[self.members_])
        if not len(positions):
            return
        self.members_ = self.members_[positions]
        module = _unwrapped(self.module_)
        index = torch.from_numpy(positions).to(module.heads.weight.device)
        module.keep_members(index)
        for state in self.optimizer_.state.values():
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim():
                    state[key] = value.index_select(0, index)
        self.kept_ = torch.from_numpy(self.members_).to(index.device)

    # ---------------------------------------------------------- steps

    def get_loss_terms(self, y_pred, y_true):
        """Loss terms of one batch, ``(4, n_members)``, named by ``DualHeadLoss.term_names``."""
        main_logits, aux_logits = y_pred
        target, weight = y_true
        return self.criterion_(main_logits, aux_logits, target, weight)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.get_loss_terms(y_pred, y_true)[0].sum()

    def predicted_log_proba(self, main_logits, aux_logits):
        """Prior-corrected log-probabilities of ``predict_head``, not calibrated."""
        logits = (main_logits, aux_logits)[self.predicted_heads_]
        return head_log_proba(logits, self.prior_correction_)

    def member_batch(self, Xi, target, weight, training):
        """A batch's inputs, targets and weights (None: all one) of the members in the network."""
        if self.kept_ is None:
            return Xi, target, weight
        # Members stop only with held-out rows: each has rows of its own.
        return tuple(
            None if part is None else part.index_select(0, self.kept_)
            for part in (Xi, target, weight)
        )

    def train_step_single(self, batch, **fit_params):
        Xi, (target, weight) = unpack_data(batch)
        Xi, target, weight = self.member_batch(Xi, target, weight, training=True)
        epsilon = self.config.strategy.adversarial_epsilon
        if epsilon > 0:
            # Each member's own copy of the inputs, for its own FGSM step.
            if Xi.dim() == 2:
                Xi = Xi.expand(_unwrapped(self.module_).n_members, *Xi.shape)
            Xi = Xi.clone().requires_grad_(True)
        y_pred = self.infer(Xi, **fit_params)
        terms = self.get_loss_terms(y_pred, (target, weight))
        # Members share no weight: the sum gives each its own gradient.
        loss = terms[0].sum()
        if epsilon > 0:
            loss = loss + self._adversarial_main_loss(
                Xi, target, weight, terms, epsilon, **fit_params
            )
        self.backward(loss)
        return {"loss": loss, "y_pred": y_pred, "terms": terms.detach()}

    def backward(self, loss):
        """Back-propagate one training step's loss."""
        loss.backward()

    def _adversarial_main_loss(self, Xi, target, weight, terms, epsilon, **fit_params):
        """Change of the total loss when half the main terms are taken on FGSM inputs.

        Each member's continuous input columns move by ``epsilon`` times the
        sign of its own main loss's gradient; category code columns are
        never perturbed (Goodfellow et al. 2015).
        """
        (grad,) = torch.autograd.grad(terms[1].sum(), Xi, retain_graph=True)
        n_continuous = self.module__n_continuous
        step = torch.zeros_like(Xi)
        step[..., :n_continuous] = epsilon * grad[..., :n_continuous].sign()
        main_logits, _ = self.infer(Xi.detach() + step, **fit_params)
        adversarial = self.criterion_.main_term(main_logits, target, weight)
        w_main = self.criterion_.weights[0]
        return w_main * 0.5 * (adversarial - terms[1]).sum()

    def validation_step(self, batch, **fit_params):
        Xi, (target, weight) = unpack_data(batch)
        Xi, target, weight = self.member_batch(Xi, target, weight, training=False)
        with torch.no_grad():
            y_pred = self.infer(Xi, **fit_params)
            terms = self.get_loss_terms(y_pred, (target, weight))
            log_proba = self.predicted_log_proba(*y_pred)
        return {"loss": terms[0].sum(), "y_pred": y_pred, "terms": terms, "log_proba": log_proba}

    # ----------------------------------------------------------- epochs

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        # skorch's partial_fit swallows every KeyboardInterrupt, and calls
        # on_train_end so that early stopping restores the best weights; the
        # flag tells a user's Ctrl-C from early stopping.
        self.interrupted_ = False
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except StopTraining:
            raise
        except KeyboardInterrupt:
            self.interrupted_ = True
            raise

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        # The mode is set once per epoch, not per step as skorch does: walking
        # the module tree costs tens of microseconds, every step.
        self._set_training(training)
        totals, n_rows, n_batches = None, 0, 0
        log_probas = []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            _, (target, _) = batch
            batch_rows = target.shape[-1]
            if totals is None:
                totals = step["terms"] * batch_rows
            else:
                totals.add_(step["terms"], alpha=batch_rows)
            n_rows += batch_rows
            n_batches += 1
            if not training:
                log_probas.append(step["log_proba"])
            self.notify("on_batch_end", batch=batch, training=training, **step)
        # One device-to-host transfer per epoch.
        means = np.full((len(DualHeadLoss.term_names), self.n_members), np.nan)
        means[:, self.members_] = self.mean_over_processes(totals / n_rows, training).cpu().numpy()
        scores = dict(zip(DualHeadLoss.term_names, means))
        if log_probas:
            scores["log_loss"] = self.held_out_log_loss(torch.cat(log_probas, dim=1))
        self._record(prefix, scores, n_batches)

    def _record(self, prefix, scores, n_batches):
        """Per-member scores, and their means over the members still training."""
        active = self.active_
        for name, values in scores.items():
            values = np.where(active, values, np.nan)
            bad = ~np.isfinite(values[active])
            if bad.any():
                # Training on from NaN weights cannot recover, and early
                # stopping would never see an improvement: stop with the
                # cause and a remedy.
                raise ValueError(
                    f"Training diverged: the {prefix}_{name} is "
                    f"{values[active][bad][0]} at epoch {len(self.history)}. "
                    f"Lower the learning rate (lr={self.lr}) or clip the "
                    "gradients with max_grad_norm, e.g. max_grad_norm=1.0."
                )
            self.history.record(f"{prefix}_{name}", float(np.nanmean(values)))
            self.history.record(f"{prefix}_{name}{_MEMBER_SUFFIX}", values.tolist())
        self.history.record(f"{prefix}_batch_count", n_batches)

    def held_out_log_loss(self, log_proba):
        """Each member's log loss on its held-out rows, as it would predict them.

        Calibrated, when the model will be, by a calibrator fitted to these
        very predictions, as the member's calibrator is: monitoring the raw
        log loss instead let focal-loss models, whose raw outputs are
        under-confident, train on while their ranking decayed (see
        ``docs/benchmarks/ablation.md``). The calibrators are kept in
        ``epoch_calibrators_`` for early stopping to keep the best one.
        """
        target, weights = self.valid_calibration
        log_proba = log_proba.to("cpu", torch.float64).numpy()
        method = CALIBRATORS.get(self.config.calibration)
        losses = np.full(self.n_members, np.nan)
        self.epoch_calibrators_ = [None] * self.n_members
        for position, member in enumerate(self.members_):
            if not self.active_[member]:
                continue
            member_log_proba, member_target = log_proba[position], target[member]
            member_weights = None if weights is None else weights[member]
            if method is not None and np.isfinite(member_log_proba).all():
                calibrator = method().fit(member_log_proba, member_target, member_weights)
                member_log_proba = calibrator.transform(member_log_proba)
                self.epoch_calibrators_[member] = calibrator
            losses[member] = weighted_nll(member_log_proba, member_target, member_weights)
        return losses

    def mean_over_processes(self, means, training):
        """Epoch means of the loss terms over all training processes.

        One process trains on all the data here; see
        :class:`AcceleratedPackedNet`.
        """
        return means


class AcceleratedPackedNet(AccelerateMixin, PackedNet):
    """:class:`PackedNet` trained data-parallel by a Hugging Face ``Accelerator``.

    skorch's :class:`~skorch.hf.AccelerateMixin` hands the module and the
    optimizer to ``accelerator.prepare``, which, in a multi-process launch,
    wraps the module in :class:`~torch.nn.parallel.DistributedDataParallel`
    so that every step averages the gradients of all processes. Batches are
    not sharded by Accelerate (``prepare`` passes an iterator that is not a
    ``DataLoader`` through unchanged) but by :class:`TensorBatches`, given
    ``iterator_train__num_processes`` and ``iterator_train__process_index``.

    Validation is not sharded: every process scores the whole held-out
    split with the same weights, so that every process records the same
    history and early stopping ends all of them at the same epoch.

    A member that stops stays in the network, which DDP has wrapped with
    its parameters: its weight of the training rows is zero from then on,
    and its best weights are put back after every step.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("unwrap_after_train", False)
        super().__init__(*args, **kwargs)

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        # (n_members, 1): one for the members still training, zero for the
        # others; None while all train.
        self.active_weight_ = None

    def stop_members(self, members):
        self.active_[members] = False
        self.active_weight_ = torch.from_numpy(self.active_[:, None].astype(np.float32))
        self._hold_stopped_members()

    def member_batch(self, Xi, target, weight, training):
        if not training or self.active_weight_ is None:
            return Xi, target, weight
        active = self.active_weight_.to(target.device)
        weight = active.expand(-1, target.shape[-1]) if weight is None else weight * active
        return Xi, target, weight

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        # AdamW moves a parameter with a zero gradient too (momentum, decay).
        self._hold_stopped_members()
        return step

    @torch.no_grad()
    def _hold_stopped_members(self):
        stopped = np.flatnonzero(~self.active_)
        for name, tensor in self._member_tensors().items():
            index = torch.as_tensor(stopped, device=tensor.device)
            tensor.data.index_copy_(0, index, self.best_state_[name].index_select(0, index))

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        # Unwrapped after the callbacks' on_train_end, not in the net's own
        # (unwrap_after_train), which skorch calls first.
        try:
            return super().partial_fit(X, y, classes, **fit_params)
        finally:
            self._unwrap_accelerator()

    def _initialize_accelerator(self):
        # The loss holds neither parameters nor buffers, so it has nothing
        # to place or synchronise; Accelerate would wrap it in DDP all the
        # same on multi-CPU runs, and DDP refuses a module without
        # parameters.
        criteria, self._criteria = self._criteria, []
        try:
            return super()._initialize_accelerator()
        finally:
            self._criteria = criteria

    def train_step_single(self, batch, **fit_params):
        # AccelerateMixin's own step returns the total loss only; the
        # per-term history needs every term.
        with self.accelerator.autocast():
            return PackedNet.train_step_single(self, batch, **fit_params)

    def backward(self, loss):
        # Scales the loss under mixed precision, and lets DDP all-reduce.
        self.accelerator.backward(loss)

    def mean_over_processes(self, means, training):
        if not training:
            return means
        # Every process trained on as many rows, so the mean of the
        # processes' means is the mean over all rows trained on.
        return self.accelerator.reduce(means, reduction="mean")


# ------------------------------------------------------------ interface


def _member_weights(sample_weight, rows, device):
    """Each member's weight of each of its rows, ``(n_members, n)``, or None.

    Scaled so that every member's weights average one over its rows: a
    batch's mean of weighted losses then estimates the member's weighted
    mean loss without bias, and the learning rate means the same with and
    without weights. None when every weight would be one.
    """
    weight = sample_weight[rows]
    weight /= weight.mean(axis=1, keepdims=True)
    if np.all(weight == 1):
        return None
    return torch.from_numpy(weight.astype(np.float32)).to(device)


def _datasets(features, y, sample_weight, valid_rows):
    """Training and held-out datasets (None: no held-out rows) and calibration data.

    With held-out rows every member takes only its own, in training and in
    validation: it computes no row it does not learn from or score.
    """
    n_members, n_rows = len(valid_rows), len(y)
    device = features.device
    if valid_rows[0] is None:
        weight = _member_weights(sample_weight, np.tile(np.arange(n_rows), (n_members, 1)), device)
        return TensorDataset(features, y, weight), None, None
    held_out = np.stack(valid_rows)
    mask = np.ones((n_members, n_rows), dtype=bool)
    np.put_along_axis(mask, held_out, False, axis=1)
    trains = np.nonzero(mask)[1].reshape(n_members, -1)
    train = TensorDataset(
        features,
        y,
        _member_weights(sample_weight, trains, device),
        rows=torch.from_numpy(trains).to(device),
    )
    valid = TensorDataset(
        features,
        y,
        _member_weights(sample_weight, held_out, device),
        rows=torch.from_numpy(held_out).to(device),
    )
    # The calibrators weigh held-out rows as the member's training rows are
    # weighed: relative to their mean, which sets the strength of their prior.
    train_means = sample_weight[trains].mean(axis=1, keepdims=True)
    weights = sample_weight[held_out] / train_means
    calibration = (
        y.cpu().numpy()[held_out],
        None if np.all(weights == 1) else weights,
    )
    return train, valid, calibration


def _make_net(config, n_members, n_train, valid, valid_calibration):
    """The skorch net that trains the members."""
    callbacks = []
    if config.max_grad_norm is not None:
        callbacks.append(("gradient_clipping", MemberGradientNormClipping(config.max_grad_norm)))
    if valid is not None:
        callbacks.append(
            ("early_stopping", MemberEarlyStopping(config.n_iter_no_change, config.tol))
        )
    if config.verbose >= 2:
        callbacks.append(("progress_bar", EpochProgressBar()))
    net_class, device, accelerated = PackedNet, config.device, {}
    accelerator = config.accelerator
    if accelerator is not None:
        n_processes = accelerator.num_processes
        if n_train < n_processes:
            raise ValueError(
                f"{n_train} training rows cannot be shared among "
                f"{n_processes} processes; train on fewer processes."
            )
        # skorch leaves device placement to the accelerator with device=None.
        net_class, device = AcceleratedPackedNet, None
        accelerated = {
            "accelerator": accelerator,
            "iterator_train__num_processes": n_processes,
            "iterator_train__process_index": accelerator.process_index,
            # Only the main process prints the table; skorch silences a
            # sink that is print itself when verbose=0.
            "callbacks__print_log__sink": (
                accelerator.print if config.verbose == 1 else print
            ),
        }
    return net_class(
        module=PackedDualHeadNetwork,
        module__n_members=n_members,
        **{f"module__{name}": value for name, value in config.network.items()},
        criterion=DualHeadLoss(
            config.strategy.main_loss,
            config.strategy.aux_loss,
            weights=config.strategy.weights,
            class_weights=config.class_weights,
        ),
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=config.weight_decay,
        optimizer__fused=fused_adamw_available(config.device) or None,
        lr=config.lr,
        max_epochs=config.max_epochs,
        batch_size=config.batch_size,
        iterator_train=TensorBatches,
        iterator_train__shuffle=True,
        iterator_valid=TensorBatches,
        train_split=None if valid is None else predefined_split(valid),
        callbacks=callbacks,
        config=config,
        valid_calibration=valid_calibration,
        device=device,
        # skorch's per-epoch table is the verbose=1 output only.
        verbose=int(config.verbose == 1),
        **accelerated,
    )


def fit_members(features, y, sample_weight, valid_rows, seed, config):
    """Train the members of an ensemble, all at once.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_columns), float32
        The preprocessed input, continuous columns first, then category
        codes.
    y : ndarray of shape (n_samples,)
        Encoded targets.
    sample_weight : ndarray of shape (n_samples,), float64
        Non-negative weights, class weights included.
    valid_rows : list of (ndarray of int or None)
        Per member, its held-out rows, as many for every member; None for
        every member trains each on every row.
    seed : int
        Seeds the weights, the shuffling and dropout.
    config : TrainingConfig

    Returns
    -------
    network : PackedDualHeadNetwork
        In eval mode, on the training device.
    members : list of Member
    """
    n_members = len(valid_rows)
    device = config.device
    # The data move to the device once, for all the members.
    X, target = (torch.from_numpy(a).to(device) for a in (features, y))
    train, valid, valid_calibration = _datasets(X, target, sample_weight, valid_rows)
    net = _make_net(config, n_members, len(train), valid, valid_calibration)
    with torch_threads(config.n_threads), _seeded(seed, device):
        net.fit(train, y=None)
    history = net.history
    if net.interrupted_:
        # An epoch is complete once its end was timed; a partial row would
        # break per-epoch curves.
        while history and "dur" not in history[-1]:
            del history[-1]
        if not history:
            raise KeyboardInterrupt
    stopper = dict(net.callbacks_).get("early_stopping")
    members = [
        _member_record(history, member, stopper, valid_rows[member])
        for member in range(n_members)
    ]
    if net.interrupted_:
        _warn_interrupted(members, config.max_epochs, stopper)
    network = _unwrapped(net.module_).eval()
    return network, members


def _member_record(history, member, stopper, valid_rows):
    n_epochs = len(history)
    best_epoch, calibrator = n_epochs, None
    if stopper is not None:
        n_epochs = int(stopper.stopped_epoch_[member]) or n_epochs
        best_epoch = int(stopper.best_epoch_[member])
        calibrator = stopper.best_calibrator_[member]
    rows = []
    for row in history[:n_epochs]:
        record = {"epoch": row["epoch"], "dur": row["dur"]}
        for key, values in row.items():
            if key.endswith(_MEMBER_SUFFIX):
                record[key[: -len(_MEMBER_SUFFIX)]] = values[member]
        record["train_batch_count"] = row["train_batch_count"]
        rows.append(record)
    return Member(calibrator, rows, best_epoch, n_epochs, valid_rows)


def _warn_interrupted(members, max_epochs, stopper):
    n_epochs = max(member.n_epochs for member in members)
    kept = (
        "each member keeps the weights of its best epoch so far"
        if stopper is not None
        else "the model keeps the weights reached when it was interrupted"
    )
    warnings.warn(
        "Training was interrupted (KeyboardInterrupt) after "
        f"{n_epochs} complete epoch(s) of max_epochs={max_epochs}; {kept}.",
        UserWarning,
    )


def member_log_proba(network, members, features, *, predict_head, prior_correction):
    """Every member's calibrated log-probabilities.

    Parameters
    ----------
    network : PackedDualHeadNetwork
        In eval mode.
    members : list of Member
    features : torch.Tensor of shape (n_samples, n_columns), float32
    predict_head : {"main", "aux", "mean"}
    prior_correction : ndarray of shape (n_classes,) or None

    Returns
    -------
    log_proba : ndarray of shape (n_members, n_samples, n_classes), float64
    """
    device = network.heads.weight.device
    n_classes, n_members = network.n_classes, network.n_members
    first, last = HEAD_SLICES[predict_head]
    width = (last - first) * n_classes
    n_chunks = math.ceil(len(features) / PREDICT_BATCH_SIZE)
    with torch.inference_mode():
        forward = InferencePass(network, predict_head, PREDICT_BATCH_SIZE)
        # Chunk-major, so that every chunk's output is one contiguous block.
        logits = torch.empty(n_chunks, n_members, PREDICT_BATCH_SIZE, width, device=device)
        for chunk in range(n_chunks):
            start = chunk * PREDICT_BATCH_SIZE
            forward(features[start : start + PREDICT_BATCH_SIZE].to(device), out=logits[chunk])
        logits = logits.transpose(0, 1).reshape(n_members, -1, width)[:, : len(features)]
        logits = logits.to("cpu", torch.float64)
    log_proba = head_log_proba(
        logits.split(n_classes, dim=-1),
        None if prior_correction is None else torch.from_numpy(prior_correction),
    ).numpy()
    return np.stack(
        [
            part if member.calibrator is None else member.calibrator.transform(part)
            for member, part in zip(members, log_proba)
        ]
    )


def shared_random_state(rng, accelerator):
    """``rng``, the main process's in every process of a distributed run.

    Every process must hold out the same validation rows and shuffle with
    the same seed, even when ``random_state`` is None.
    """
    if accelerator is None:
        return rng
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([rng])[0]


def training_device(device, accelerator):
    """The device to train on: ``device``, or the one the accelerator gives."""
    if accelerator is None:
        return device
    # A run on several CPUs reports "cpu:0", a name torch cannot load onto.
    device = accelerator.device
    return "cpu" if device.type == "cpu" else str(device)


def network_state(network):
    """What rebuilds ``network``: its arguments and its weights, on the CPU."""
    weights = {name: tensor.cpu() for name, tensor in network.state_dict().items()}
    return network.init_kwargs, weights


def load_network(state, device):
    """The network of :func:`network_state`, in eval mode on ``device``."""
    init_kwargs, weights = state
    # Built on the meta device, the weights are never drawn: loading a model
    # leaves torch's random numbers alone.
    with torch.device("meta"):
        network = PackedDualHeadNetwork(**init_kwargs)
    network.load_state_dict(weights, assign=True)
    return network.to(device).eval()


def device_available(device):
    """Whether tensors can be put on ``device`` on this machine."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return True

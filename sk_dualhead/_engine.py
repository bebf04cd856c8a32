"""The private skorch net behind :class:`~sk_dualhead.DualHeadClassifier`.

skorch's defaults feed a network through a per-row ``Dataset`` and a
``DataLoader`` that collates rows back into batches; on tabular data that
costs more than the network itself. Here the data is held as whole tensors,
moved to the device once, and batches are slices of them. The loss terms are
summed on the device and read back once per epoch, so a GPU is not stalled
by a host synchronisation per batch.
"""

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, EpochTimer, PrintLog
from skorch.dataset import unpack_data
from skorch.hf import AccelerateMixin

from ._network import InferencePass
from .calibration import CALIBRATORS, weighted_nll
from .losses import DualHeadLoss

__all__ = []

#: Rows per forward pass at prediction time (the last chunk padded to it, see
#: :class:`~sk_dualhead._network.InferencePass`): large chunks amortise the
#: per-call overhead; 1,024 was the fastest of 256 to 8,192 on the CPU.
PREDICT_BATCH_SIZE = 1024


#: The heads whose logits each ``predict_head`` reads.
PREDICT_HEADS = {"main": ("main",), "aux": ("aux",), "mean": ("main", "aux")}


def head_log_proba(main_logits, aux_logits, head):
    """Log-probabilities of the head used for prediction.

    ``"mean"`` averages the two heads' probabilities, not their logits: an
    average of probabilities is itself a probability and is never more
    over-confident than its parts.
    """
    if head == "main":
        return F.log_softmax(main_logits, dim=1)
    if head == "aux":
        return F.log_softmax(aux_logits, dim=1)
    stacked = torch.stack(
        [F.log_softmax(main_logits, dim=1), F.log_softmax(aux_logits, dim=1)]
    )
    return torch.logsumexp(stacked, dim=0) - torch.log(
        torch.tensor(2.0, dtype=stacked.dtype, device=stacked.device)
    )


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


def _take(tensor, i):
    """``tensor[i]``, by ``index_select`` for a 1-D index tensor.

    On the CPU ``index_select`` gathers a batch of 256 rows some 2.5 times
    faster than advanced indexing (40 against 115 microseconds on 50
    columns), every training step.
    """
    if isinstance(i, torch.Tensor) and i.dim() == 1:
        return tensor.index_select(0, i)
    return tensor[i]


class TensorDataset(torch.utils.data.Dataset):
    """Some rows of whole tensors of features, encoded targets and weights.

    ``rows`` (an index tensor) picks this dataset's rows out of ``X``, ``y``
    and ``sample_weight`` when it is indexed, so the training and the
    held-out datasets share one feature tensor instead of each holding a
    copy of their rows: on a large table the copies would double the memory
    a fit needs. ``rows=None`` stands for all rows.

    ``sample_weight=None`` stands for weights that are all one: the losses
    then skip the multiplications by one, which are exact, so nothing but
    the time changes.

    Indexing with an int, a slice or an index tensor of positions within
    the dataset returns ``(features, (targets, weights))``.
    """

    def __init__(self, X, y, sample_weight=None, rows=None):
        self.X = X
        self.y = y
        self.sample_weight = sample_weight
        self.rows = rows

    def __len__(self):
        return len(self.X) if self.rows is None else len(self.rows)

    def __getitem__(self, i):
        if self.rows is not None:
            i = _take(self.rows, i)
        weight = None if self.sample_weight is None else _take(self.sample_weight, i)
        return _take(self.X, i), (_take(self.y, i), weight)


class TensorBatches:
    """Batches sliced from a :class:`TensorDataset`, shuffled or in order.

    A last batch of a single row is merged into the one before it, so that
    batch normalisation never sees a batch of one.

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
        starts = list(range(0, n, self.batch_size))
        if len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()
        return list(zip(starts, starts[1:] + [n]))

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


class StopTraining(KeyboardInterrupt):
    """Early stopping's signal to end training.

    skorch ends training by raising :class:`KeyboardInterrupt`, the same
    exception as a user's Ctrl-C; a subclass tells the two apart.
    """


class BestEpochEarlyStopping(EarlyStopping):
    """:class:`skorch.callbacks.EarlyStopping` that stops with :class:`StopTraining`."""

    def on_epoch_end(self, net, **kwargs):
        try:
            super().on_epoch_end(net, **kwargs)
        except KeyboardInterrupt:
            # Only the patience running out is early stopping; a Ctrl-C that
            # lands inside this callback stays a user's interruption.
            if self.misses_ != self.patience:
                raise
            raise StopTraining from None


class DualHeadNet(NeuralNet):
    """skorch net training a two-headed module with a :class:`DualHeadLoss`.

    Parameters
    ----------
    predict_head : {"main", "aux", "mean"}
        Head whose probabilities are scored as ``valid_log_loss`` and
        returned by :meth:`predicted_log_proba`.
    adversarial_epsilon : float, default=0.0
        When positive, the main loss of each training batch is the mean of
        its value on the batch and on an FGSM copy of it (Goodfellow et al.
        2015): the continuous input columns moved by ``epsilon`` times the
        sign of the main loss's gradient. Category code columns are never
        perturbed.
    prior_correction : tuple of float or None, default=None
        Added to both heads' logits before the softmax, to undo the prior
        shift of class-balanced training.
    calibration : {"temperature", "platt"} or None, default=None
        Calibration that the estimator fits on the held-out split after
        training. ``valid_log_loss`` is the log loss after fitting it to
        each epoch's held-out predictions, so that early stopping scores
        the probabilities the model will return.
    **kwargs
        Passed to :class:`skorch.NeuralNet`.
    """

    def __init__(
        self,
        *args,
        predict_head="main",
        adversarial_epsilon=0.0,
        prior_correction=None,
        calibration=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.predict_head = predict_head
        self.adversarial_epsilon = adversarial_epsilon
        self.prior_correction = prior_correction
        self.calibration = calibration

    def get_default_callbacks(self):
        # Loss terms are recorded per epoch by run_single_epoch, so skorch's
        # per-batch PassthroughScoring callbacks are not needed.
        return [("epoch_timer", EpochTimer()), ("print_log", PrintLog())]

    def get_loss_terms(self, y_pred, y_true):
        """Stacked loss terms of one batch, named by ``DualHeadLoss.term_names``."""
        main_logits, aux_logits = y_pred
        target, sample_weight = y_true
        return self.criterion_(main_logits, aux_logits, target, sample_weight)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.get_loss_terms(y_pred, y_true)[0]

    def predicted_log_proba(self, main_logits, aux_logits):
        """Prior-corrected log-probabilities of ``predict_head``, not calibrated.

        A head that is not predicted with may be ``None``.
        """
        if self.prior_correction is not None:
            logits = main_logits if main_logits is not None else aux_logits
            correction = torch.as_tensor(
                self.prior_correction, dtype=logits.dtype, device=logits.device
            )
            main_logits, aux_logits = (
                None if z is None else z + correction for z in (main_logits, aux_logits)
            )
        return head_log_proba(main_logits, aux_logits, self.predict_head)

    def held_out_log_loss(self, log_proba, target, sample_weight):
        """Log loss of the held-out predictions as the model would return them.

        Calibrated, when the model will be, by a calibrator fitted to these
        very predictions, as the estimator does after training: monitoring
        the raw log loss instead let focal-loss models, whose raw outputs
        are under-confident, train on while their ranking decayed (on
        lending_club the raw log loss kept falling for 40 to 60 epochs while
        the ROC AUC fell from 0.72 to 0.63).
        """
        log_proba = log_proba.to("cpu", torch.float64).numpy()
        target = target.cpu().numpy()
        weights = None if sample_weight is None else sample_weight.cpu().numpy()
        if self.calibration is not None and np.isfinite(log_proba).all():
            calibrator = CALIBRATORS[self.calibration]()
            log_proba = calibrator.fit(log_proba, target, weights).transform(log_proba)
        return float(weighted_nll(log_proba, target, weights))

    def train_step_single(self, batch, **fit_params):
        Xi, yi = unpack_data(batch)
        if self.adversarial_epsilon > 0:
            Xi = Xi.detach().requires_grad_(True)
        y_pred = self.infer(Xi, **fit_params)
        terms = self.get_loss_terms(y_pred, yi)
        loss = terms[0]
        if self.adversarial_epsilon > 0:
            loss = loss + self._adversarial_main_loss(Xi, yi, terms, **fit_params)
        self.backward(loss)
        return {"loss": terms[0], "y_pred": y_pred, "terms": terms.detach()}

    def backward(self, loss):
        """Back-propagate one training step's loss."""
        loss.backward()

    def _adversarial_main_loss(self, Xi, yi, terms, **fit_params):
        """Change of the total loss when half its main term is taken on FGSM inputs."""
        (grad,) = torch.autograd.grad(terms[1], Xi, retain_graph=True)
        n_continuous = self.module__n_continuous
        step = torch.zeros_like(Xi)
        step[:, :n_continuous] = self.adversarial_epsilon * grad[:, :n_continuous].sign()
        main_logits, _ = self.infer(Xi.detach() + step, **fit_params)
        target, sample_weight = yi
        adversarial = self.criterion_.main_loss(
            main_logits, target, sample_weight=sample_weight
        )
        w_main = self.criterion_.weights[0]
        return w_main * 0.5 * (adversarial - terms[1])

    def validation_step(self, batch, **fit_params):
        Xi, yi = unpack_data(batch)
        with torch.no_grad():
            y_pred = self.infer(Xi, **fit_params)
            terms = self.get_loss_terms(y_pred, yi)
            log_proba = self.predicted_log_proba(*y_pred)
        return {"loss": terms[0], "y_pred": y_pred, "terms": terms, "log_proba": log_proba}

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        # skorch's partial_fit swallows every KeyboardInterrupt, and calls
        # on_train_end so that early stopping restores the best weights; the
        # flag lets the estimator tell a user's Ctrl-C from early stopping.
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
        held_out = []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            batch_rows = len(batch[0])
            if totals is None:
                totals = step["terms"] * batch_rows
            else:
                totals.add_(step["terms"], alpha=batch_rows)
            n_rows += batch_rows
            n_batches += 1
            if not training:
                held_out.append((step["log_proba"], *batch[1]))
            self.notify("on_batch_end", batch=batch, training=training, **step)
        # One device-to-host transfer per epoch.
        means = self.mean_over_processes(totals / n_rows, training)
        scores = dict(zip(DualHeadLoss.term_names, means.tolist()))
        if held_out:
            log_proba, target, weight = zip(*held_out)
            scores["log_loss"] = self.held_out_log_loss(
                torch.cat(log_proba),
                torch.cat(target),
                None if weight[0] is None else torch.cat(weight),
            )
        bad = [(name, value) for name, value in scores.items() if not math.isfinite(value)]
        if bad:
            # Training on from NaN weights cannot recover, and early stopping
            # would never see an improvement: stop with the cause and a remedy.
            name, value = bad[0]
            raise ValueError(
                f"Training diverged: the {prefix}_{name} is {value} at epoch "
                f"{len(self.history)}. Lower the learning rate (lr={self.lr}) "
                "or clip the gradients with max_grad_norm, e.g. max_grad_norm=1.0."
            )
        for name, value in scores.items():
            self.history.record(f"{prefix}_{name}", value)
        self.history.record(f"{prefix}_batch_count", n_batches)

    def mean_over_processes(self, means, training):
        """Epoch means of the loss terms over all training processes.

        One process trains on all the data here; see
        :class:`AcceleratedDualHeadNet`.
        """
        return means

    def predict_logits(self, X, heads=("main", "aux")):
        """Logits of ``heads`` for a float32 tensor ``X``, in float64 on the CPU.

        Returns ``(main_logits, aux_logits)``, ``None`` for a head not asked
        for: on the CPU a 2-logit head on 1024 rows costs some 6% of the
        trunk, so a head whose output would be thrown away is not computed.
        """
        self._set_training(False)
        n_classes = self.module_.main_head.out_features
        n_chunks = math.ceil(len(X) / PREDICT_BATCH_SIZE)
        with torch.inference_mode():
            forward = InferencePass(self.module_, heads, PREDICT_BATCH_SIZE)
            logits = torch.empty(
                n_chunks * PREDICT_BATCH_SIZE, len(heads) * n_classes, device=self.device
            )
            for start in range(0, len(X), PREDICT_BATCH_SIZE):
                forward(
                    X[start : start + PREDICT_BATCH_SIZE].to(self.device),
                    out=logits[start : start + PREDICT_BATCH_SIZE],
                )
            logits = logits[: len(X)].to("cpu", torch.float64)
        by_head = dict(zip(heads, logits.split(n_classes, dim=1)))
        return by_head.get("main"), by_head.get("aux")


class AcceleratedDualHeadNet(AccelerateMixin, DualHeadNet):
    """:class:`DualHeadNet` trained data-parallel by a Hugging Face ``Accelerator``.

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
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("unwrap_after_train", False)
        super().__init__(*args, **kwargs)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        # Unwrapped after the callbacks' on_train_end, not in the net's own
        # (unwrap_after_train), which skorch calls first: early stopping
        # restores there the best weights it saved from the wrapped module,
        # whose state dict keys DDP prefixes with "module.".
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
            return DualHeadNet.train_step_single(self, batch, **fit_params)

    def backward(self, loss):
        # Scales the loss under mixed precision, and lets DDP all-reduce.
        self.accelerator.backward(loss)

    def mean_over_processes(self, means, training):
        if not training:
            return means
        # Every process trained on as many rows, so the mean of the
        # processes' means is the mean over all rows trained on.
        return self.accelerator.reduce(means, reduction="mean")


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

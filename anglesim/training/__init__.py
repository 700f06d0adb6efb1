"""Training: phases (pretrain, fine-tune, multitask) run in order on one model.

A `Phase` says what the network sees (a prior over angles and a grating spec, drawn on the fly
or as a fixed finite dataset), what it is trained to do (one or several `Task`s: a head, a loss
and a weight), how (optimiser, learning rate, epochs, batch size), and which named blocks may
change. `train(model, phases, seed)` runs the phases in order and returns a per-epoch history.

Conventions:

* Blocks outside ``Phase.trainable`` have ``requires_grad`` switched off and are left out of
  the optimiser, so they stay bit-for-bit unchanged (weight decay cannot touch them either).
* ``Phase.strategy`` (with ``strategy_params``) names a fine-tuning strategy from
  :mod:`anglesim.finetune` that chooses, among the ``trainable`` blocks, which parameters train
  at which rates and may hook the step (penalty, rate schedule, projection, adapters); the
  default ``"full"`` trains them all at ``lr``.
* ``Phase.reset_optimizer=False`` carries the optimiser's per-parameter state (Adam's moment
  estimates and step counts) over from the previous phase; ``True`` starts it afresh.
* With ``dataset_size=D`` the phase trains on a fixed set of 8D images with validation (2D)
  and test (2D) sets, stops early when the validation loss has not improved for ``patience``
  epochs, and restores the best checkpoint — the reference research's (lrast/angleFinetuning)
  protocol (Adam, lr 1e−3, batch 32). Without it, every batch is fresh (``steps_per_epoch``
  batches an epoch).
* Targets other than θ: ``Phase.vary={"contrast": (lo, hi)}`` (or ``"frequency"``) draws that
  stimulus property per image uniformly on [lo, hi] (on-the-fly phases only), and
  ``Task(head=..., target="contrast", loss="mse")`` trains a ``"scalar"`` head (see
  ``AngleNet.add_head``) to predict it, standardised to zero mean and unit variance under that
  uniform distribution (:func:`standardise`), so predicting the mean costs exactly 1.
  :func:`evaluate_target_error` measures such a head's error. Fisher information about θ is
  still measured at one fixed stimulus (a ``GratingSpec``), not over the varied property.
* Output-level shifts: ``Task(target_offset=δ)`` trains an angle head on y = (θ + δ) mod π
  instead of θ (the image, and so the information about θ, is unchanged; only the function
  the head must compute moves). :func:`evaluate_error` takes the same ``target_offset``, and a
  phase's per-epoch ``eval_error`` uses the offset of its task on ``head``.
* Devices: ``train(model, phases, seed, device="cuda")`` (or ``"cpu"``, ``"cuda:1"``, a
  ``torch.device``) moves the model there in place and draws every batch, finite split and
  evaluation image there with generators on that device; the default is wherever the
  model's parameters are. :func:`evaluate_error` and the strategies work on the model's
  device. The same seed gives the same numbers on the same device (not across devices).
* Seeds: ``train`` draws from the named streams of :mod:`anglesim.seeding`: ``"data"``
  (batches, finite splits; replaced by ``generator`` when one is given), ``"eval"`` (the
  per-epoch evaluation images) and ``"strategy"`` indexed by the phase name (a strategy's
  own draws), so no two uses share random numbers by accident.

Modules: :mod:`~anglesim.training.phase` (``Phase``, ``Task``), :mod:`~anglesim.training.loop`
(``train``) and :mod:`~anglesim.training.strategy` (the strategy context, hook protocol and
registry that :mod:`anglesim.finetune` fills); the measurements moved to
:mod:`anglesim.evaluate` and are re-exported here.
"""

from ..data import draw_varied
from ..evaluate import evaluate_error, evaluate_target_error, standardise
from .loop import make_generator, train
from .phase import OPTIMIZERS, TARGETS, Phase, Task
from .strategy import (
    STRATEGIES,
    Strategy,
    StrategyContext,
    build_strategy,
    make_context,
    named_pool,
    register_strategy,
    strategy_generator,
    strategy_names,
)

__all__ = ["OPTIMIZERS", "STRATEGIES", "TARGETS", "Phase", "Strategy", "StrategyContext",
           "Task", "build_strategy", "draw_varied", "evaluate_error", "evaluate_target_error",
           "make_context", "make_generator", "named_pool", "register_strategy", "standardise",
           "strategy_generator", "strategy_names", "train"]

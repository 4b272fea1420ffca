"""Cross-Modal Adaptation: few-shot classifier heads trained on frozen (cached) image, text and audio features.

Paper: Lin, Yu, Kuang, Pathak, Ramanan, "Multimodality Helps Unimodality: Cross-Modal Few-Shot Learning with
Multimodal Models", CVPR 2023; code studied: linzhiqiu/cross_modal_adaptation (spec in the project's
``specs/cma.md``). The class names' text embeddings (one per prompt template) become extra labelled training samples
of their class (cross-modal) or are left out (uni-modal); a linear head (or a residual adapter and a linear head) on
L2-normalised features with a fixed logit scale starts from the zero-shot text weights or at random, and WiSE-FT
interpolates the trained head with the zero-shot one.

* :mod:`.heads`: the head configuration, the initial weights (zero-shot or random), the single head module and WiSE-FT.
* :mod:`.training`: the features of one few-shot split, the learning-rate schedule and evaluation points (the seed's
  or the fixed ones, ``faithful``), the shuffled cyclic batch streams and one training run (the seed's loop).
* :mod:`.grid`: every (learning rate, weight decay, batch size) configuration of a split (``train_grid``), or of
  many splits such as a protocol's shots x seeds (``train_grids``), trained at once as one batched computation, with
  per-configuration validation, best-state tracking, early stopping and selection.

Not a registered ``Method``: the heads train on cached features of the frozen encoders (``docs/methods/cma.md``).
"""

from avlearn.methods.cma.grid import GRIDS, GridConfig, GridResult, seed_summary, train_grid, train_grids
from avlearn.methods.cma.heads import (
    CMAHead,
    HeadConfig,
    initial_state,
    wiseft,
    zero_shot_weights,
)
from avlearn.methods.cma.training import FewShotFeatures, RunResult, ScheduleConfig, train_run

__all__ = ["GRIDS", "CMAHead", "FewShotFeatures", "GridConfig", "GridResult", "HeadConfig", "RunResult",
           "ScheduleConfig", "initial_state", "seed_summary", "train_grid", "train_grids", "train_run",
           "wiseft", "zero_shot_weights"]  # fmt: skip

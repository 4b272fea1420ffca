"""Run configuration: Hydra config groups (task/ method/ backbone/ data/ train/) with dataclass schemas."""

from avlearn.config.compose import compose_run, expand_sweep, save_config
from avlearn.config.schema import BackboneConfig, DataConfig, RunConfig, TrainConfig

__all__ = ["compose_run", "expand_sweep", "save_config", "BackboneConfig", "DataConfig", "RunConfig", "TrainConfig"]

"""vpbench: a benchmark harness for video prediction."""
from .config import TrainConfig, bookkeeping, iterations
from .data import DatasetConfig, Protocol, VideoDataset
from .errors import UserError
from .registry import DATASETS, PREDICTORS, load_plugin, register_dataset, register_predictor
from .spec import VideoSpec

__version__ = "0.1.0"

__all__ = [
    "DATASETS", "PREDICTORS", "DatasetConfig", "Protocol", "TrainConfig", "UserError", "VideoDataset",
    "VideoSpec", "bookkeeping", "iterations", "load_plugin", "register_dataset", "register_predictor",
]

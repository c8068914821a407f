"""LightningModules of the experiment suite. None of them sets the LR: callbacks do."""

from experiments.tasks.autoencoder import ContinualAutoencoderTask
from experiments.tasks.base import BaseTask
from experiments.tasks.regression import LinearRegressionTask
from experiments.tasks.trajectories import TrajectoryTask
from experiments.tasks.xor import XORTask

__all__ = ["BaseTask", "ContinualAutoencoderTask", "LinearRegressionTask", "TrajectoryTask", "XORTask"]

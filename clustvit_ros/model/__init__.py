"""model layer of clustvit_ros: ViT encoder, Cluster module, Regenerator, heads, FLOPs, checkpoints.

Plain PyTorch; never imports ROS.
"""
from .budget import MergeBudget
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .configs import ClustViTConfig
from .flops import dense_gflops, frame_gflops
from .segmentor import ClustViT, SegOutput, TokenStats

__all__ = ["CheckpointError", "ClustViT", "ClustViTConfig", "MergeBudget", "SegOutput",
           "TokenStats", "dense_gflops", "frame_gflops", "load_checkpoint", "save_checkpoint"]

"""Data side of skinacc: sources, checks, splits, transforms and loaders (see ``load_skin_dataset``)."""

from skinacc.data.data_config import AugmentConfig, DataConfig, resolve_augment, resolve_data_config
from skinacc.data.folder import scan_image_folder
from skinacc.data.images import check_image, load_rgb, to_rgb
from skinacc.data.loaders import (
    BalancedSampler,
    balanced_class_weights,
    build_dataloader,
    collate_skin,
    default_num_workers,
    get_transform,
)
from skinacc.data.mixing import BatchMix
from skinacc.data.plan import DataPlan, EvalPlan, build_data_plan, build_eval_plan, load_data
from skinacc.data.report import BadFile, DataReport, SkinData, paths_of
from skinacc.data.shards import write_shards
from skinacc.data.sources import load_skin_dataset
from skinacc.data.splits import split_indices, stratified_split
from skinacc.data.streaming import StreamingLoader, load_streaming
from skinacc.data.synthetic import SyntheticSpec, generate_synthetic_dataset, synthetic_class_names
from skinacc.data.transforms import BatchNormalizer, ImageTransform, preresize, set_transforms

__all__ = [
    "AugmentConfig",
    "BadFile",
    "BalancedSampler",
    "BatchMix",
    "BatchNormalizer",
    "DataConfig",
    "DataPlan",
    "DataReport",
    "EvalPlan",
    "ImageTransform",
    "SkinData",
    "StreamingLoader",
    "SyntheticSpec",
    "balanced_class_weights",
    "build_data_plan",
    "build_dataloader",
    "build_eval_plan",
    "check_image",
    "collate_skin",
    "default_num_workers",
    "generate_synthetic_dataset",
    "get_transform",
    "load_data",
    "load_rgb",
    "load_skin_dataset",
    "load_streaming",
    "paths_of",
    "preresize",
    "resolve_augment",
    "resolve_data_config",
    "scan_image_folder",
    "set_transforms",
    "split_indices",
    "stratified_split",
    "synthetic_class_names",
    "to_rgb",
    "write_shards",
]

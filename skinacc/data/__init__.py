"""Data side of skinacc: sources, checks, splits, transforms and loaders (see ``load_skin_dataset``)."""

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
from skinacc.data.sources import BadFile, DataReport, SkinData, load_skin_dataset, paths_of, scan_image_folder
from skinacc.data.splits import split_indices, stratified_split
from skinacc.data.streaming import StreamingLoader, load_streaming, write_shards
from skinacc.data.synthetic import SyntheticSpec, generate_synthetic_dataset, synthetic_class_names
from skinacc.data.transforms import (
    AugmentConfig,
    BatchNormalizer,
    DataConfig,
    ImageTransform,
    preresize,
    resolve_augment,
    resolve_data_config,
    set_transforms,
)

__all__ = [
    "AugmentConfig",
    "BadFile",
    "BalancedSampler",
    "BatchMix",
    "BatchNormalizer",
    "DataConfig",
    "DataReport",
    "ImageTransform",
    "SkinData",
    "StreamingLoader",
    "SyntheticSpec",
    "balanced_class_weights",
    "build_dataloader",
    "check_image",
    "collate_skin",
    "default_num_workers",
    "generate_synthetic_dataset",
    "get_transform",
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

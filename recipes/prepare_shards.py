"""Turn an image folder (or any source skinacc reads) into pre-resized Parquet shards for --streaming.

Pays decoding the originals once: a 50 GB folder of photographs becomes a few GB of 256 px JPEGs in
Parquet, with labels, groups and the split already made (the same options as training: --val_size,
--test_size, --split_seed, --group_column, --dedupe_groups), the bad-file report beside them, and a
dataset card, ready for ``push_to_hub``. Train on the result without copying it anywhere:

    python recipes/prepare_shards.py --data_dir /data/massive-skin-disease --output_dir /data/msd-shards
    python recipes/prepare_shards.py --data_dir ../shared/data/isic8-dermoscopy --group_column lesion_group \\
        --output_dir /data/isic8-shards --push_to_hub --hub_dataset_id my-org/isic8-shards

    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/train.py \\
        --config recipes/configs/seed_b3.yaml --dataset_name /data/msd-shards --streaming
    accelerate launch ... recipes/train.py --dataset_name my-org/isic8-shards --streaming

Shards hold about --images_per_shard images each, the count rounded up to a multiple of
--shard_multiple so that 1, 2, 4 or 8 ranks read whole shards. Store at least the resize size
training will use (--shard_size; a 224 px crop is resized from 256).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from _cli import parse_args, run

from skinacc.config import DataArguments
from skinacc.data import default_num_workers, load_skin_dataset
from skinacc.data.streaming import write_shards


@dataclass
class ShardArguments:
    """Where the shards go and how they are cut."""

    output_dir: str = field(default="", metadata={"help": "New folder for the shards (must not exist)."})
    shard_size: int = field(
        default=256,
        metadata={"help": "Shorter side of the stored images, in pixels (>= training's resize size)."},
    )
    images_per_shard: int = field(default=1000, metadata={"help": "About this many images per Parquet file."})
    shard_multiple: int = field(
        default=8, metadata={"help": "Round each split's shard count up to a multiple of this."}
    )
    shuffle_seed: int = field(default=0, metadata={"help": "Seed of the training split's stored order."})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality of the stored images (1-100)."})
    num_proc: int | None = field(
        default=None, metadata={"help": "Processes that decode and resize (default: the cores less one)."}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the folder as a Hub dataset."})
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "<user-or-org>/<name> of the dataset repo."}
    )
    hub_private: bool = field(default=False, metadata={"help": "Create the dataset repo private."})

    def validate(self) -> list[str]:
        p = []
        if not self.output_dir:
            p.append("--output_dir: give a new folder for the shards")
        if self.shard_size < 32:
            p.append(f"--shard_size={self.shard_size}: must be at least 32")
        for name in ("images_per_shard", "shard_multiple"):
            if getattr(self, name) < 1:
                p.append(f"--{name}={getattr(self, name)}: must be >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            p.append(f"--jpeg_quality={self.jpeg_quality}: must be in 1..100")
        if self.push_to_hub and not self.hub_dataset_id:
            p.append("--push_to_hub needs --hub_dataset_id=<user-or-org>/<name>")
        return p


def main(argv: list[str] | None = None) -> dict:
    data_args, args = parse_args((DataArguments, ShardArguments), argv, description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = load_skin_dataset(data_args)
    print(data.report.summary())
    meta = write_shards(
        data,
        args.output_dir,
        args.shard_size,
        images_per_shard=args.images_per_shard,
        shard_multiple=args.shard_multiple,
        shuffle_seed=args.shuffle_seed,
        jpeg_quality=args.jpeg_quality,
        num_proc=args.num_proc or default_num_workers(None),
        cache_dir=data_args.cache_dir,
        extra_meta={
            "split": {
                k: getattr(data_args, k)
                for k in ("test_size", "val_size", "split_seed", "group_column", "dedupe_groups")
            }
        },
    )
    sizes = ", ".join(
        f"{s}={v['num_examples']} in {v['num_shards']} shards" for s, v in meta["splits"].items()
    )
    print(f"wrote {args.output_dir}: {sizes}; {meta['images_per_sec']} images/s")
    if args.push_to_hub:
        from skinacc.hub import push_folder_to_hub

        url = push_folder_to_hub(
            args.output_dir,
            args.hub_dataset_id,
            args.hub_private,
            "Upload skinacc shards",
            "dataset",
            "--hub_dataset_id",
        )
        print(f"pushed to the Hub: {url}")
    print(json.dumps({k: meta[k] for k in ("splits", "seconds", "images_per_sec")}))
    return meta


if __name__ == "__main__":
    run(main)

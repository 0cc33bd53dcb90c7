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
from typing import Any

from skinacc.cli.common import parse_args
from skinacc.config import DataArguments
from skinacc.config.tools import ShardArguments
from skinacc.data.shards import prepare_shards
from skinacc.hub import push_folder_to_hub


def main(argv: list[str] | None = None) -> dict[str, Any]:
    data_args, args = parse_args((DataArguments, ShardArguments), argv, description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    meta = prepare_shards(data_args, args)
    sizes = ", ".join(
        f"{s}={v['num_examples']} in {v['num_shards']} shards" for s, v in meta["splits"].items()
    )
    print(f"wrote {args.output_dir}: {sizes}; {meta['images_per_sec']} images/s")
    if args.push_to_hub:
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

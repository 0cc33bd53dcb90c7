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

This script is ``skinacc prepare-shards`` (``python -m skinacc prepare-shards``, or ``accelerate launch ... -m skinacc
prepare-shards``): it runs :mod:`skinacc.cli.prepare_shards`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("prepare-shards")

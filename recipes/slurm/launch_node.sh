#!/usr/bin/env bash
# One machine's share of a multi-machine skinacc run. `srun` starts it once per node (see
# train_multinode.sbatch); it starts `accelerate launch` with this node's rank, and accelerate starts
# the node's processes (one per GPU). Everything after the script name goes to `accelerate launch`
# after the launch flags: the recipe and its options.
#
#   srun --ntasks-per-node=1 recipes/slurm/launch_node.sh recipes/train.py --config recipes/configs/seed_b3.yaml ...
#
# Environment (SLURM sets the first three):
#   SLURM_NODEID          this node's rank (0 = the main node, where rank-0 writes happen)
#   SLURM_JOB_NUM_NODES   number of machines
#   SLURM_JOB_NODELIST    the job's nodes (the first one is the main node unless MAIN_PROCESS_IP is set)
#   ACCELERATE_CONFIG     launch YAML (default accelerate_configs/2node_4gpu_fp16.yaml); its
#                         num_machines / num_processes / machine_rank / main_process_ip are overridden
#   PROCESSES_PER_NODE    processes (GPUs) per machine (default: SLURM_GPUS_ON_NODE, else 4)
#   MAIN_PROCESS_IP       address of the main node (default: first host of SLURM_JOB_NODELIST)
#   MAIN_PROCESS_PORT     rendezvous port on the main node (default 29500)
#   LAUNCH_ARGS           extra `accelerate launch` flags, e.g. "--mixed_precision bf16"
set -euo pipefail

: "${SLURM_NODEID:?launch_node.sh runs under srun (SLURM_NODEID is not set)}"
: "${SLURM_JOB_NUM_NODES:?launch_node.sh runs under srun (SLURM_JOB_NUM_NODES is not set)}"
CONFIG="${ACCELERATE_CONFIG:-accelerate_configs/2node_4gpu_fp16.yaml}"
PER_NODE="${PROCESSES_PER_NODE:-${SLURM_GPUS_ON_NODE:-4}}"
if [[ -z "${MAIN_PROCESS_IP:-}" ]]; then
  MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
fi
PORT="${MAIN_PROCESS_PORT:-29500}"
if [[ ! -f "$CONFIG" ]]; then
  echo "launch_node.sh: ACCELERATE_CONFIG=$CONFIG does not exist (run from the repository root)" >&2
  exit 2
fi

echo "node $SLURM_NODEID of $SLURM_JOB_NUM_NODES on $(hostname): $PER_NODE processes, main $MAIN_PROCESS_IP:$PORT" >&2
# shellcheck disable=SC2086  # LAUNCH_ARGS is a list of flags
exec accelerate launch \
  --config_file "$CONFIG" \
  --num_machines "$SLURM_JOB_NUM_NODES" \
  --num_processes "$((SLURM_JOB_NUM_NODES * PER_NODE))" \
  --machine_rank "$SLURM_NODEID" \
  --main_process_ip "$MAIN_PROCESS_IP" \
  --main_process_port "$PORT" \
  ${LAUNCH_ARGS:-} \
  "$@"

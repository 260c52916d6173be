#!/bin/bash
# DDP without SLURM: torchrun starts one process per GPU; Lightning reads the ranks torchrun sets.
# nproc_per_node must equal trainer.devices. For several machines add --nnodes, --node_rank and
# --rdzv_endpoint=HOST:PORT, and trainer.num_nodes.
#   bash cluster/torchrun.sh                 # 4 GPUs on this machine
set -euo pipefail
GPUS=${GPUS:-4}
torchrun --standalone --nproc_per_node="$GPUS" -m retinalight.fit --exp ablation_drive --arm sa_unet --seeds 0 \
  --set trainer.accelerator=gpu trainer.devices="$GPUS" trainer.strategy=ddp

#!/bin/bash -l
#SBATCH --job-name=deepspeed-camel-distributed
#SBATCH --output=%x-%j.out
#SBATCH --time=24:00:00
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-gpu=6
#SBATCH --mem=384G
#
# Full fine-tuning of a 30B model with DeepSpeed ZeRO-3, parameters and optimizer state
# offloaded to CPU (4 nodes × 4 GPUs in the seed): srun starts one torchrun per node; they meet
# by c10d rendezvous on the first host of the Slurm node list, on a port picked free there.
#
#   MODEL_PATH=/models/llama-30b DATA_PATH=datasets/dataset.json sbatch scripts/train_camel_30B_distributed_deepspeed.sh
#   MODEL_PATH=/models/llama-30b bash scripts/train_camel_30B_distributed_deepspeed.sh  # one node, no Slurm
#   DRY_RUN=1 MODEL_PATH=... bash scripts/train_camel_30B_distributed_deepspeed.sh      # print the command only
#
# Submit from the checkout (or set CAMEL_CHAT_DIR); the model, data and output paths must be
# visible from every node. A reservation or partition goes on the sbatch command line or in
# SBATCH_RESERVATION / SBATCH_PARTITION. Arguments after the script name (and EXTRA_ARGS) are
# appended to the training flags and win over them. Global batch 128 = 1 per GPU × 8
# accumulation steps × 16 GPUs (4 nodes × 4); GRAD_ACCUM is recomputed for other node or GPU
# counts. As in the seed: no gradient checkpointing flag, and the learning-rate schedule is the
# preset's (configs/ds_zero3_offload.json, DEEPSPEED_CONFIG), so no --lr_scheduler_type.
set -euo pipefail
# Under sbatch this file runs from a spool copy: the checkout is the submit directory.
scripts_dir=${CAMEL_CHAT_DIR:+$CAMEL_CHAT_DIR/scripts}
[[ -n $scripts_dir ]] || scripts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -f $scripts_dir/_launch.sh ]] || scripts_dir="${SLURM_SUBMIT_DIR:-$PWD}/scripts"
[[ -f $scripts_dir/_launch.sh ]] || { echo "error: scripts/_launch.sh not found: run from the camel_chat checkout or set CAMEL_CHAT_DIR" >&2; exit 1; }
# shellcheck source=scripts/_launch.sh
source "$scripts_dir/_launch.sh"

: "${MODEL_PATH:=models/llama-30b}"
: "${OUTPUT_DIR:=output/camel-30B}"
: "${GPUS_PER_NODE:=${SLURM_GPUS_ON_NODE:-4}}"
: "${PER_DEVICE_TRAIN_BATCH_SIZE:=1}"
: "${PER_DEVICE_EVAL_BATCH_SIZE:=32}"
: "${GLOBAL_BATCH_SIZE:=128}"
: "${DEEPSPEED_CONFIG:=$CAMEL_CHAT_DIR/configs/ds_zero3_offload.json}"
camel_setup
camel_grad_accum

camel_launch camel_chat.train.train \
    --model_name_or_path "$MODEL_PATH" \
    --data_path "$DATA_PATH" \
    --template "$TEMPLATE" \
    --output_dir "$OUTPUT_DIR" \
    --bf16 True \
    --tf32 True \
    --num_train_epochs 3 \
    --per_device_train_batch_size "$PER_DEVICE_TRAIN_BATCH_SIZE" \
    --per_device_eval_batch_size "$PER_DEVICE_EVAL_BATCH_SIZE" \
    --gradient_accumulation_steps "$GRAD_ACCUM" \
    --eval_strategy steps \
    --eval_steps 200 \
    --save_strategy steps \
    --save_steps 200 \
    --save_total_limit 6 \
    --learning_rate 2e-5 \
    --weight_decay 0 \
    --warmup_ratio 0.04 \
    --logging_steps 1 \
    --model_max_length "$MODEL_MAX_LENGTH" \
    --deepspeed "$DEEPSPEED_CONFIG" \
    "$@"

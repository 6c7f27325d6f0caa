#!/bin/bash -l
#SBATCH --job-name=fsdp-camel7B
#SBATCH --output=%x-%j.out
#SBATCH --time=24:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-gpu=6
#SBATCH --mem=128G
#
# Full fine-tuning of a 7B model with FSDP (full shard, one node, 4 × A100-80GB in the seed).
#
#   MODEL_PATH=/models/llama-7b DATA_PATH=datasets/dataset.json sbatch scripts/train_camel_7B.sh
#   MODEL_PATH=/models/llama-7b bash scripts/train_camel_7B.sh            # without Slurm
#   DRY_RUN=1 MODEL_PATH=... bash scripts/train_camel_7B.sh               # print the command only
#
# Submit from the checkout (or set CAMEL_CHAT_DIR). A reservation or partition goes on the
# sbatch command line or in SBATCH_RESERVATION / SBATCH_PARTITION. Arguments after the script
# name (and EXTRA_ARGS) are appended to the training flags and win over them. Global batch
# 128 = 2 per GPU × 16 accumulation steps × 4 GPUs; with other GPU counts GRAD_ACCUM is
# recomputed to keep 128. FSDP sharding, bf16 mixed precision and activation checkpointing
# come from the preset configs/fsdp_full_shard.json (FSDP_CONFIG).
set -euo pipefail
# Under sbatch this file runs from a spool copy: the checkout is the submit directory.
scripts_dir=${CAMEL_CHAT_DIR:+$CAMEL_CHAT_DIR/scripts}
[[ -n $scripts_dir ]] || scripts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -f $scripts_dir/_launch.sh ]] || scripts_dir="${SLURM_SUBMIT_DIR:-$PWD}/scripts"
[[ -f $scripts_dir/_launch.sh ]] || { echo "error: scripts/_launch.sh not found: run from the camel_chat checkout or set CAMEL_CHAT_DIR" >&2; exit 1; }
# shellcheck source=scripts/_launch.sh
source "$scripts_dir/_launch.sh"

: "${MODEL_PATH:=models/llama-7b}"
: "${OUTPUT_DIR:=output/camel-7B}"
: "${GPUS_PER_NODE:=${SLURM_GPUS_ON_NODE:-4}}"
: "${PER_DEVICE_TRAIN_BATCH_SIZE:=2}"
: "${PER_DEVICE_EVAL_BATCH_SIZE:=16}"
: "${GLOBAL_BATCH_SIZE:=128}"
: "${FSDP_CONFIG:=$CAMEL_CHAT_DIR/configs/fsdp_full_shard.json}"
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
    --eval_steps 1500 \
    --save_strategy steps \
    --save_steps 1500 \
    --save_total_limit 8 \
    --learning_rate 2e-5 \
    --weight_decay 0 \
    --warmup_ratio 0.04 \
    --lr_scheduler_type cosine \
    --logging_steps 1 \
    --model_max_length "$MODEL_MAX_LENGTH" \
    --fsdp "full_shard auto_wrap" \
    --fsdp_config "$FSDP_CONFIG" \
    "$@"

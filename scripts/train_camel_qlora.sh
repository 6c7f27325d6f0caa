#!/bin/bash -l
#SBATCH --job-name=camel-qlora
#SBATCH --output=%x-%j.out
#SBATCH --time=24:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-gpu=6
#SBATCH --mem=256G
#
# QLoRA: LoRA adapters (r 64, alpha 16, dropout 0.05) on every linear layer of a 4-bit NF4
# base with double quantisation; data-parallel (DDP) over the GPUs, each holding a whole copy.
#
#   MODEL_PATH=/models/llama-7b DATA_PATH=datasets/dataset.json sbatch scripts/train_camel_qlora.sh
#   MODEL_PATH=/models/llama-7b bash scripts/train_camel_qlora.sh         # 1 GPU without Slurm
#   DEEPSPEED_CONFIG=configs/ds_zero2.json sbatch scripts/train_camel_qlora.sh   # DeepSpeed ZeRO-2
#   DRY_RUN=1 MODEL_PATH=... bash scripts/train_camel_qlora.sh            # print the command only
#
# The seed's global batch is 16 = 1 per GPU × 16 accumulation steps × 1 GPU (kept by recomputing
# GRAD_ACCUM: 4 steps on the 4 GPUs sbatch gives); its released QLoRA models used 256
# (GLOBAL_BATCH_SIZE=256). Memory at batch size 1 with flash attention: 7B ≈ 9.5 GB, 13B ≈ 16 GB,
# 33B ≈ 36 GB, 65B ≈ 65 GB per GPU. To resume, rerun: the latest checkpoint-* in OUTPUT_DIR is
# picked up with its optimizer state. Submit from the checkout (or set CAMEL_CHAT_DIR);
# reservation or partition: sbatch flags or SBATCH_RESERVATION / SBATCH_PARTITION. Arguments
# after the script name (and EXTRA_ARGS) are appended to the training flags and win over them.
set -euo pipefail
# Under sbatch this file runs from a spool copy: the checkout is the submit directory.
scripts_dir=${CAMEL_CHAT_DIR:+$CAMEL_CHAT_DIR/scripts}
[[ -n $scripts_dir ]] || scripts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -f $scripts_dir/_launch.sh ]] || scripts_dir="${SLURM_SUBMIT_DIR:-$PWD}/scripts"
[[ -f $scripts_dir/_launch.sh ]] || { echo "error: scripts/_launch.sh not found: run from the camel_chat checkout or set CAMEL_CHAT_DIR" >&2; exit 1; }
# shellcheck source=scripts/_launch.sh
source "$scripts_dir/_launch.sh"

: "${MODEL_PATH:=models/llama-7b}"
: "${OUTPUT_DIR:=output/camel-qlora}"
: "${GPUS_PER_NODE:=${SLURM_GPUS_ON_NODE:-1}}"
: "${PER_DEVICE_TRAIN_BATCH_SIZE:=1}"
: "${PER_DEVICE_EVAL_BATCH_SIZE:=16}"
: "${GLOBAL_BATCH_SIZE:=16}"
: "${DEEPSPEED_CONFIG:=}"
camel_setup
camel_grad_accum

deepspeed=()
[[ -z $DEEPSPEED_CONFIG ]] || deepspeed=(--deepspeed "$DEEPSPEED_CONFIG")

camel_launch camel_chat.train.train_qlora \
    --model_name_or_path "$MODEL_PATH" \
    --data_path "$DATA_PATH" \
    --template "$TEMPLATE" \
    --output_dir "$OUTPUT_DIR" \
    --bf16 True \
    --num_train_epochs 3 \
    --per_device_train_batch_size "$PER_DEVICE_TRAIN_BATCH_SIZE" \
    --per_device_eval_batch_size "$PER_DEVICE_EVAL_BATCH_SIZE" \
    --gradient_accumulation_steps "$GRAD_ACCUM" \
    --eval_strategy steps \
    --eval_steps 250 \
    --max_eval_samples 1000 \
    --save_strategy steps \
    --save_steps 250 \
    --save_total_limit 100 \
    --learning_rate 1e-4 \
    --weight_decay 0 \
    --warmup_ratio 0.03 \
    --lr_scheduler_type constant \
    --logging_steps 1 \
    --model_max_length "$MODEL_MAX_LENGTH" \
    --activation_checkpointing True \
    --bits 4 \
    --quant_type nf4 \
    --double_quant True \
    --lora_r 64 \
    --lora_alpha 16 \
    --lora_dropout 0.05 \
    --max_memory_MB 80000 \
    --max_grad_norm 0.3 \
    --ddp_find_unused_parameters False \
    ${deepspeed[@]+"${deepspeed[@]}"} \
    "$@"

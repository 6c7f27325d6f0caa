#!/usr/bin/env bash
# The whole pipeline on the bundled sample data, offline, with a tiny locally built model.
#
#   bash scripts/demo.sh [WORKDIR]      (or `make demo`, which first builds .venv)
#
# 1. download_datasets finds the sample archives already in the download directory
#    (exactly how offline users run it) and extracts them;
# 2. convert_datasets_to_conversation_format writes one <name>_conv.json per dataset;
# 3. a tiny tokenizer + random LLaMA model is built locally (no hub access);
# 4. merge.py splits everything to a 2048-token budget and writes dataset.json;
# 5. train_qlora trains a LoRA adapter on it (packed rows, a few CPU steps);
# 6. apply_lora merges the adapter into the base: a standard, self-describing checkpoint;
# 7. the merged checkpoint is loaded with plain transformers and its own chat template.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$here/demo_run}"
data="$work/datasets"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

rm -rf "$work"
mkdir -p "$data"
cp -r "$here/samples/datasets/." "$data/"

echo "== 1/7 download_datasets (archives already present: extract only)"
python -m camel_chat.data_preprocessing.download_datasets --download_directory "$data" --datasets all

echo "== 2/7 convert_datasets_to_conversation_format"
python -m camel_chat.data_preprocessing.convert_datasets_to_conversation_format \
    --download_directory "$data" --datasets all

echo "== 3/7 build a tiny local model and tokenizer"
python -m camel_chat.model.tiny --out "$work/tiny-llama" --arch llama --template vicuna_v1.1 --max-length 2048

echo "== 4/7 merge.py (vicuna_v1.1, 2048 tokens per piece)"
(cd "$here" && python merge.py --in-directory "$data" --out-file dataset.json \
    --tokenizer-path "$work/tiny-llama" --max-length 2048)

python - "$data/dataset.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print(f"\ndataset.json: {len(data)} conversations; first one:")
print(json.dumps(data[0], indent=2, ensure_ascii=False)[:600])
PY

echo "== 5/7 train_qlora: a LoRA adapter on the tiny model (bits 16, packing, 8 CPU steps)"
python -m camel_chat.train.train_qlora --model_name_or_path "$work/tiny-llama" \
    --data_path "$data/dataset.json" --output_dir "$work/lora" --template vicuna_v1.1 \
    --bits 16 --lora_r 8 --lora_alpha 16 --model_max_length 2048 --packing True \
    --per_device_train_batch_size 2 --max_steps 8 --learning_rate 1e-3 \
    --logging_steps 2 --save_steps 4 --use_cpu True --report_to none

echo "== 6/7 apply_lora: merge the adapter into the base"
python -m camel_chat.model.apply_lora --base-model-path "$work/tiny-llama" \
    --target-model-path "$work/merged" --lora-path "$work/lora"

echo "== 7/7 load the merged checkpoint with plain transformers and its chat template"
python - "$work/merged" <<'PY'
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer
path = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
messages = [{"role": "user", "content": "Write a haiku about camels."}]
prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
print("prompt:", repr(prompt[-80:]))
ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
out = model.generate(**ids, max_new_tokens=16, do_sample=False)
print("reply (a tiny random model, so noise):", repr(tokenizer.decode(out[0][ids["input_ids"].shape[1]:])))
PY
echo "demo finished: $data/dataset.json, $work/lora, $work/merged"

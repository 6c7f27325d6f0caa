#!/usr/bin/env bash
# The whole pipeline on the bundled sample data, offline, with a tiny locally built model.
#
#   bash scripts/demo.sh [WORKDIR]      (or `make demo`, which first builds .venv)
#
# 1. download_datasets finds the sample archives already in the download directory
#    (exactly how offline users run it) and extracts them;
# 2. convert_datasets_to_conversation_format writes one <name>_conv.json per dataset;
# 3. a tiny tokenizer + random LLaMA model is built locally (no hub access);
# 4. merge.py splits everything to a 2048-token budget and writes dataset.json.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$here/demo_run}"
data="$work/datasets"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

rm -rf "$work"
mkdir -p "$data"
cp -r "$here/samples/datasets/." "$data/"

echo "== 1/4 download_datasets (archives already present: extract only)"
python -m camel_chat.data_preprocessing.download_datasets --download_directory "$data" --datasets all

echo "== 2/4 convert_datasets_to_conversation_format"
python -m camel_chat.data_preprocessing.convert_datasets_to_conversation_format \
    --download_directory "$data" --datasets all

echo "== 3/4 build a tiny local model and tokenizer"
python -m camel_chat.model.tiny --out "$work/tiny-llama" --arch llama --template vicuna_v1.1 --max-length 2048

echo "== 4/4 merge.py (vicuna_v1.1, 2048 tokens per piece)"
(cd "$here" && python merge.py --in-directory "$data" --out-file dataset.json \
    --tokenizer-path "$work/tiny-llama" --max-length 2048)

python - "$data/dataset.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print(f"\ndataset.json: {len(data)} conversations; first one:")
print(json.dumps(data[0], indent=2, ensure_ascii=False)[:800])
PY
echo "demo finished: $data/dataset.json"

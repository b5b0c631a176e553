#!/usr/bin/env bash
# The package as users get it: build the wheel, install it (not editable) into a fresh
# venv, and from outside the repository list the presets and train a tiny model.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "torch==2.13.0"
"$work/venv/bin/python" -m pip wheel -q --no-deps -w "$work/dist" "$repo"
"$work/venv/bin/python" -m pip install -q "$work"/dist/sentitune-*.whl
cd "$work"
"$work/venv/bin/sentitune" presets | grep -qx sst2-minilm
printf 'text,label\n' > tiny.csv
for i in $(seq 1 40); do
  printf 'a wonderful and moving film %s,positive\nan awful and boring film %s,negative\n' "$i" "$i"
done >> tiny.csv
"$work/venv/bin/sentitune" train --data tiny.csv --model minilm --epochs 1 --max-length 16 \
  --batch-size 16 --output run --quiet
"$work/venv/bin/sentitune" predict run "A wonderful film." | grep -q '"label"'
echo "wheel check passed: presets listed, a tiny model trained and predicted from $work"

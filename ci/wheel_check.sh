#!/usr/bin/env bash
# The package as users get it: build the wheel, install it (not editable) into a fresh
# venv, and from outside the repository list the presets and train a tiny model.
# The wheel is built from a copy of the working tree's files (tracked and untracked, never
# the ignored build/ or *.egg-info), so an earlier build cannot leak into it and the check
# leaves no build/ in the repository. tests/test_install.py covers the other install paths.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/source"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -I{} sh -c 'test ! -e "$1" || cp --parents -- "$1" "$2"' _ {} "$work/source")
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "torch==2.13.0"
"$work/venv/bin/python" -m pip wheel -q --no-deps -w "$work/dist" "$work/source"
"$work/venv/bin/python" -m pip install -q "$work"/dist/sentitune-*.whl
cd "$work"
# Every preset of the source tree is listed (first column; its purpose follows), nothing else.
diff <(ls "$repo"/src/sentitune/presets/*.yaml | xargs -n1 basename | sed 's/\.yaml$//' | LC_ALL=C sort) \
  <("$work/venv/bin/sentitune" presets | cut -d" " -f1)
printf 'text,label\n' > tiny.csv
for i in $(seq 1 40); do
  printf 'a wonderful and moving film %s,positive\nan awful and boring film %s,negative\n' "$i" "$i"
done >> tiny.csv
"$work/venv/bin/sentitune" train --data tiny.csv --model minilm --epochs 1 --max-length 16 \
  --batch-size 16 --output run --quiet
"$work/venv/bin/sentitune" predict run "A wonderful film." | grep -q '"label"'
echo "wheel check passed: presets listed, a tiny model trained and predicted from $work"

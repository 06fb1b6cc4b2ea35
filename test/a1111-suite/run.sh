#!/usr/bin/env bash
# Runs AUTOMATIC1111's own API tests (test_txt2img.py, test_img2img.py, test_utils.py,
# test_extras.py of A1111 v1.10.1) against a real `sdstudio serve`. A1111's files are not part of
# this repository: point this script at the `test/` folder of a stable-diffusion-webui checkout
#   git clone --depth 1 -b v1.10.1 https://github.com/AUTOMATIC1111/stable-diffusion-webui
#   test/a1111-suite/run.sh stable-diffusion-webui/test [CHECKPOINT] [-- extra pytest args]
# CHECKPOINT defaults to the tiny golden model ($SDSTUDIO_SHARED/golden/tiny-sd, as the test suite
# uses). Needs python3 with pytest and requests. The server runs on a temporary data dir on
# 127.0.0.1:$PORT (default 7860, A1111's, which its tests expect unless SDSTUDIO_BASE_URL is set)
# and is stopped at the end. Cases that need a feature SD Studio does not have yet are deselected
# (see KNOWN_MISSING); ALL=1 runs them too.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tests="${1:?usage: run.sh A1111_TEST_DIR [CHECKPOINT] [-- pytest args]}"
tests="$(cd "$tests" && pwd)"
shift
shared="${SDSTUDIO_SHARED:-$repo/../shared}"
ckpt="$shared/golden/tiny-sd/tiny-sd.safetensors"
if [[ $# -gt 0 && "$1" != "--" ]]; then ckpt="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
[[ -f "$ckpt" ]] || { echo "no checkpoint at $ckpt (pass one as the second argument)" >&2; exit 2; }
port="${PORT:-7860}"
export SDSTUDIO_BASE_URL="${SDSTUDIO_BASE_URL:-http://127.0.0.1:$port}"
vocab="$shared/data/clip/bpe_simple_vocab_16e6.txt.gz"
[[ -z "${SDSTUDIO_CLIP_VOCAB:-}" && -f "$vocab" ]] && export SDSTUDIO_CLIP_VOCAB="$vocab"

# Needs a later issue: face restoration (GFPGAN/CodeFormer) and A1111's scripts ("SD upscale").
KNOWN_MISSING=(
  test_txt2img.py::test_txt2img_with_restore_faces_performed
  test_img2img.py::test_img2img_sd_upscale_performed
)

data="$(mktemp -d "${TMPDIR:-/tmp}/sdstudio-a1111-suite-XXXXXX")"
mkdir -p "$data/models/Stable-diffusion"
ln -s "$(cd "$(dirname "$ckpt")" && pwd)/$(basename "$ckpt")" "$data/models/Stable-diffusion/"
log="$data/server.log"
node "$repo/bin/sdstudio.js" serve --port "$port" --nowebui --data-dir "$data" >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 1 120); do
  if grep -q "Running on" "$log"; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.5
done
grep -q "Running on" "$log" || { echo "the server did not start:" >&2; cat "$log" >&2; exit 1; }

deselect=()
if [[ "${ALL:-0}" != "1" ]]; then
  for t in "${KNOWN_MISSING[@]}"; do deselect+=(--deselect "$t"); done
fi
cd "$tests"
set +e
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" python3 -m pytest -c /dev/null --rootdir "$tests" -p base_url_plugin -p no:cacheprovider \
  -q -rfEs "${deselect[@]}" "$@" \
  test_txt2img.py test_img2img.py test_utils.py test_extras.py
rc=$?
set -e
[[ $rc -eq 0 ]] || { echo "--- server log ---" >&2; tail -50 "$log" >&2; }
exit $rc

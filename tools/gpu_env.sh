# Source on the GPU machine: carried wheels, editable install, build cache in build/.
export PYTHONUNBUFFERED=1 MAX_JOBS=16
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null || return 1
export TORCH_FMHA_CACHE=$PWD/build/torch_fmha_cache

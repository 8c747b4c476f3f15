#!/usr/bin/env bash
# Installs what tests/it/cluster.rs needs:
# - Slurm from the Debian packages (slurmctld, slurmd, the client commands, munge). The test
#   starts its own one-node cluster on 127.0.0.1 from a slurm.conf it writes; nothing here
#   starts a daemon or writes /etc/slurm. Where the packages cannot be installed (no apt,
#   not root, no such package), the reason is written to $CACHE/slurm-unavailable and the
#   Slurm test skips with it; this script still exits 0 for that.
# - kubernetes-validate (PyPI) in a virtual environment cached outside the repository: it
#   checks the manifest `sweep k8s` writes against the Kubernetes OpenAPI schemas it ships
#   (offline, --strict: unknown fields are errors).
#
# Usage:
#   scripts/cluster-tools.sh               install what is missing
#   scripts/cluster-tools.sh --validator   print the kubernetes-validate path; exit 1 if absent
# Env: SWEEP_CACHE (default ~/.cache/sweep), KUBERNETES_VALIDATE_VERSION, PYTHON (python3).
set -euo pipefail

CACHE="${SWEEP_CACHE:-$HOME/.cache/sweep}"
KV_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
KV_VENV="$CACHE/kubernetes-validate-$KV_VERSION"
KV="$KV_VENV/bin/kubernetes-validate"
KV_STAMP="$KV_VENV/.installed"

if [[ "${1:-}" == "--validator" ]]; then
    if [[ -f "$KV_STAMP" && -x "$KV" ]]; then
        echo "$KV"
        exit 0
    fi
    echo "kubernetes-validate $KV_VERSION is not installed; run scripts/cluster-tools.sh" >&2
    exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/cluster-tools.lock"
flock 9

# --- Slurm -------------------------------------------------------------------------------
unavailable="$CACHE/slurm-unavailable"
have_slurm() {
    for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged /usr/bin/sbatch \
        /usr/bin/squeue /usr/bin/scontrol /usr/bin/scancel; do
        [[ -x "$b" ]] || return 1
    done
}
if have_slurm; then
    echo "cluster-tools: Slurm $(/usr/sbin/slurmctld -V | awk '{print $2}') present" >&2
    rm -f "$unavailable"
elif ! command -v apt-get >/dev/null; then
    echo "no apt-get: Slurm's Debian packages cannot be installed here" > "$unavailable"
elif [[ "$(id -u)" -ne 0 ]]; then
    echo "not root: the local test cluster needs root (slurmd starts jobs as their user)" \
        > "$unavailable"
else
    echo "cluster-tools: installing slurmctld slurmd slurm-client munge" >&2
    apt-get update -qq >&2 || true
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >&2 && have_slurm; then
        rm -f "$unavailable"
    else
        echo "apt-get could not install slurmctld slurmd slurm-client munge" > "$unavailable"
    fi
fi
[[ -f "$unavailable" ]] && echo "cluster-tools: Slurm unavailable: $(cat "$unavailable")" >&2

# --- kubernetes-validate ------------------------------------------------------------------
if [[ ! -f "$KV_STAMP" || ! -x "$KV" ]]; then
    echo "cluster-tools: installing kubernetes-validate $KV_VERSION into $KV_VENV" >&2
    rm -rf "$KV_VENV"
    "${PYTHON:-python3}" -m venv "$KV_VENV"
    "$KV_VENV/bin/python" -m pip install --quiet "kubernetes-validate==$KV_VERSION" >&2
    "$KV" --version >&2
    touch "$KV_STAMP"
fi
echo "cluster-tools: kubernetes-validate at $KV" >&2

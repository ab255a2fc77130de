#!/usr/bin/env bash
# Deploys berth to the current kubectl context from a kustomize overlay (deploy/k8s/overlays/<env>)
# and waits for the rollout. See docs/deploy.md.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'USAGE'
usage: scripts/deploy-k8s.sh [options] ENV

Deploys deploy/k8s/overlays/ENV (dev or production) to the current kubectl context:
  1. renders the overlay (kubectl kustomize) and creates the namespaces it uses when missing
  2. kubectl apply -k deploy/k8s/overlays/ENV
  3. sets the berth-database Secret's database-url when BERTH_DATABASE_URL is set
  4. kubectl rollout status deployment/berth, then prints how to roll back

Options:
  --image REF        deploy this image instead of the overlay's (e.g.
                     ghcr.io/acme/berth:k8s-0.1.0); rendered through a temporary overlay,
                     the repository is not modified
  --context NAME     the kubectl context to use (default: the current one)
  --timeout DURATION how long to wait for the rollout (default: 5m)
  --dry-run          only render the manifests to stdout; no cluster is contacted
  -h, --help         this help

Environment: BERTH_DATABASE_URL (optional) the PostgreSQL URL to store in the Secret;
KUBECTL (default: kubectl).
USAGE
}

die() {
    echo "error: $*" >&2
    exit 2
}

env_name=""
image=""
context=""
timeout="5m"
dry_run=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --image) [[ $# -ge 2 ]] || die "--image needs a REF"; image="$2"; shift 2 ;;
        --context) [[ $# -ge 2 ]] || die "--context needs a NAME"; context="$2"; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || die "--timeout needs a DURATION"; timeout="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) [[ -z "$env_name" ]] || die "one ENV only"; env_name="$1"; shift ;;
    esac
done
overlays="$(cd deploy/k8s/overlays && printf '%s ' */ | tr -d /)"
[[ -n "$env_name" ]] || { usage >&2; die "which ENV? ($overlays)"; }
overlay="deploy/k8s/overlays/$env_name"
[[ -f "$overlay/kustomization.yaml" ]] || die "no overlay $overlay (have: $overlays)"

kubectl_bin="${KUBECTL:-kubectl}"
command -v "$kubectl_bin" >/dev/null 2>&1 ||
    die "kubectl is not installed (Debian: apt-get install -y kubernetes-client)"
kubectl=("$kubectl_bin")
if [[ -n "$context" ]]; then kubectl+=(--context "$context"); fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

# render DIR: kubectl kustomize into $workdir/rendered.yaml. Kustomize prints deprecation notes
# as "# Warning:" lines on stderr; only real errors are shown.
rendered="$workdir/rendered.yaml"
render() {
    if ! "${kubectl[@]}" kustomize "$1" >"$rendered" 2>"$workdir/kustomize.err"; then
        grep -v '^# Warning:' "$workdir/kustomize.err" >&2 || true
        die "cannot render $overlay"
    fi
}

target="$overlay"
render "$target"
# --image: a temporary overlay on top of the chosen one, so the repository stays as it is. Its
# images transformer matches the image name the overlay renders.
if [[ -n "$image" ]]; then
    if [[ "$image" =~ ^([^@]+)@(sha256:[0-9a-f]+)$ ]]; then
        name="${BASH_REMATCH[1]}"
        ref="@${BASH_REMATCH[2]}"
    elif [[ "$image" =~ ^(.+):([A-Za-z0-9_][A-Za-z0-9_.-]*)$ && "${BASH_REMATCH[2]}" != */* ]]; then
        name="${BASH_REMATCH[1]}"
        ref=":${BASH_REMATCH[2]}"
    else
        die "--image '$image' is not NAME:TAG or NAME@sha256:DIGEST"
    fi
    current="$(awk '/^kind: Deployment$/ { d = 1 } d && $1 == "image:" { print $2; exit }' "$rendered")"
    current="${current%@*}"
    [[ "$current" =~ ^(.*):[^/:]+$ ]] && current="${BASH_REMATCH[1]}"
    [[ -n "$current" ]] || die "$overlay renders no Deployment image"
    mkdir -p "$workdir/overlay"
    {
        echo "apiVersion: kustomize.config.k8s.io/v1beta1"
        echo "kind: Kustomization"
        echo "bases:"
        # Older kustomize wants a relative path here.
        echo "  - $(realpath --relative-to="$workdir/overlay" "$overlay")"
        echo "images:"
        echo "  - name: $current"
        echo "    newName: $name"
        if [[ "$ref" == @* ]]; then echo "    digest: ${ref#@}"; else echo "    newTag: ${ref#:}"; fi
    } >"$workdir/overlay/kustomization.yaml"
    target="$workdir/overlay"
    render "$target"
fi
if [[ $dry_run -eq 1 ]]; then
    cat "$rendered"
    exit 0
fi

# The namespaces the manifests live in (berth's own and the sandboxes').
mapfile -t namespaces < <(sed -n 's/^  namespace: *\([a-z0-9-]*\) *$/\1/p' "$rendered" | sort -u)
berth_ns="$(awk '/^kind: Deployment$/ { d = 1 } d && /^  namespace:/ { print $2; exit }' "$rendered")"
[[ -n "$berth_ns" ]] || die "the rendered overlay has no Deployment"
for ns in "${namespaces[@]}"; do
    if ! "${kubectl[@]}" get namespace "$ns" >/dev/null 2>&1; then
        echo "creating namespace $ns" >&2
        "${kubectl[@]}" create namespace "$ns"
    fi
done

echo "applying $overlay${image:+ with image $image}" >&2
"${kubectl[@]}" apply -k "$target"

# The Secret in the manifests carries no data (so apply never overwrites it): set the URL here.
if [[ -n "${BERTH_DATABASE_URL:-}" ]]; then
    # Through a private file, not the command line (where `ps` would show it).
    url="${BERTH_DATABASE_URL//\\/\\\\}"
    url="${url//\"/\\\"}"
    (umask 077 && printf '{"stringData":{"database-url":"%s"}}\n' "$url" >"$workdir/secret-patch.json")
    "${kubectl[@]}" -n "$berth_ns" patch secret berth-database --type merge \
        --patch-file "$workdir/secret-patch.json" >/dev/null
    echo "set database-url in secret/berth-database" >&2
fi

if ! "${kubectl[@]}" -n "$berth_ns" rollout status deployment/berth --timeout "$timeout"; then
    cat >&2 <<MSG
error: deployment/berth did not become ready within $timeout.
  look:      ${kubectl[*]} -n $berth_ns get pods -l app.kubernetes.io/name=berth
             ${kubectl[*]} -n $berth_ns logs deployment/berth
  roll back: ${kubectl[*]} -n $berth_ns rollout undo deployment/berth
MSG
    exit 1
fi

cat <<MSG
berth is rolled out in namespace $berth_ns.
To roll back to the previous revision (its pod spec names the previous berth-config ConfigMap,
which kustomize's hashed names keep in the cluster):
  ${kubectl[*]} -n $berth_ns rollout history deployment/berth
  ${kubectl[*]} -n $berth_ns rollout undo deployment/berth [--to-revision=N]
MSG

#!/usr/bin/env bash
# Write a kubeconfig that acts as the ServiceAccount moontv-deployer with a short-lived token.
set -euo pipefail

usage() {
  cat <<'TXT'
Usage: tools/deployer-kubeconfig.sh --namespace NS [--duration 24h] [--output FILE]
                                    [--kubeconfig ADMIN_KUBECONFIG] [--context ADMIN_CONTEXT]
                                    [--name CONTEXT_NAME] [--server URL]

Run by a cluster admin after `pulumi -C deploy/deployer up --stack ENV` made the namespace and
the ServiceAccount moontv-deployer in it (docs/least-privilege.md). Asks the API server for a
token of that ServiceAccount (`kubectl create token moontv-deployer --namespace NS
--duration D`: a TokenRequest, bound to the ServiceAccount, that expires after D and is stored
nowhere in the cluster) and writes a kubeconfig holding only that token, the API server's URL and
its CA certificate.

  --namespace NS       the app stack's namespace (its moontv:namespace)
  --duration D         token lifetime (default 24h); the API server may shorten it
                       (--service-account-max-token-expiration; managed clusters cap it)
  --output FILE        where to write it (default: stdout), mode 0600
  --kubeconfig, --context
                       the admin's kubeconfig and context (defaults: kubectl's)
  --name NAME          the context name in the written kubeconfig (default: the admin
                       context's name, so the stack's moontv:kubernetes.context finds it)
  --server URL         the API server URL as CI reaches it (default: the admin context's)

To rotate: run it again and replace the CI secret (KUBECONFIG_STAGING, KUBECONFIG_TESTING,
KUBECONFIG_PROD or PREVIEW_KUBECONFIG), e.g.
  tools/deployer-kubeconfig.sh --namespace moontv-staging --context staging --duration 168h |
    gh secret set KUBECONFIG_STAGING --env staging
An old token stays valid until it expires; to cut every token at once, delete and re-create
the ServiceAccount (`pulumi -C deploy/deployer up --stack ENV --replace <its URN>`).
TXT
}

namespace="" duration=24h output="" admin_kubeconfig="" admin_context="" name="" server=""
while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --namespace) namespace=${2:?--namespace needs a value}; shift 2 ;;
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --output) output=${2:?--output needs a value}; shift 2 ;;
    --kubeconfig) admin_kubeconfig=${2:?--kubeconfig needs a value}; shift 2 ;;
    --context) admin_context=${2:?--context needs a value}; shift 2 ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --server) server=${2:?--server needs a value}; shift 2 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n $namespace ]] || { echo "error: --namespace is required (see --help)" >&2; exit 2; }
if [[ ! $duration =~ ^[0-9]+(s|m|h)$ ]]; then
  echo "error: --duration must be a number with s, m or h (e.g. 24h), got '$duration'" >&2
  exit 2
fi

admin=(kubectl)
[[ -n $admin_kubeconfig ]] && admin+=(--kubeconfig "$admin_kubeconfig")
[[ -n $admin_context ]] && admin+=(--context "$admin_context")

view() { "${admin[@]}" config view --raw --minify --flatten -o "jsonpath=$1"; }
[[ -n $name ]] || name=$(view '{.contexts[0].name}')
[[ -n $server ]] || server=$(view '{.clusters[0].cluster.server}')
ca=$(view '{.clusters[0].cluster.certificate-authority-data}')
ca_line=""
[[ -z $ca ]] || ca_line="    certificate-authority-data: $ca"
token=$("${admin[@]}" create token moontv-deployer --namespace "$namespace" --duration "$duration")

kubeconfig=$(cat <<YAML
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: $server
$ca_line
users:
- name: moontv-deployer@$namespace
  user:
    token: $token
contexts:
- name: $name
  context:
    cluster: $name
    user: moontv-deployer@$namespace
    namespace: $namespace
current-context: $name
YAML
)
if [[ -n $output ]]; then
  (umask 077; printf '%s\n' "$kubeconfig" > "$output")
  echo "wrote $output: moontv-deployer in $namespace, token valid for $duration" >&2
else
  printf '%s\n' "$kubeconfig"
fi

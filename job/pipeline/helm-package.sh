# The script of wharf-cmd's helm-package step
# (pkg/steps/k8sscript-helm-package.sh at 421514f), with one fix: without a
# version it passed an empty argument to helm package, which then packaged
# the working directory as a second chart.

# -e: exit when any command fails
# -u: exit when referencing undeclared variable
# -o pipefail: exit when any commands fails in pipes
set -euo pipefail

: ${CHART_PATH:?"Missing required Helm chart path"}
: ${CHART_VERSION?"Missing required Helm chart version"}
: ${CHART_REPO:?"Missing required Helm registry URL"}

VERSION_FLAG=()
if [ -n "$CHART_VERSION" ]
then
    VERSION_FLAG=("--version=$CHART_VERSION")
fi

echo "\$ helm package $CHART_PATH ${VERSION_FLAG[*]}"
helm package "$CHART_PATH" "${VERSION_FLAG[@]}"

echo "\$ helm push *.tgz $CHART_REPO --insecure-skip-tls-verify"
helm push *.tgz "$CHART_REPO" --insecure-skip-tls-verify

#!/bin/sh
# Set the pod template's checksum/config annotation in deployment.yaml to the sha256 of
# configmap.yaml, so that `kubectl apply` rolls out new pods after a config change.
# Run it after every edit of configmap.yaml:  sh deploy/kubernetes/update-checksum.sh
set -eu
cd "$(dirname "$0")"
if command -v sha256sum > /dev/null; then
    sum=$(sha256sum configmap.yaml | cut -d ' ' -f 1)
else  # macOS
    sum=$(shasum -a 256 configmap.yaml | cut -d ' ' -f 1)
fi
sed "s|^\( *checksum/config:\).*|\1 \"$sum\"|" deployment.yaml > deployment.yaml.new
mv deployment.yaml.new deployment.yaml
echo "checksum/config: $sum"

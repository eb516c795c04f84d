#!/bin/sh
# scripts/k8s-pipelines.sh — writes deploy/k8s/pipelines.yaml, the ConfigMap
# that carries pipelines/*.yaml byte for byte (kustomize reads no files
# outside deploy/k8s/). Run it after changing a pipeline; tests/test_deploy.py
# fails while the two differ.
set -eu
cd "$(dirname "$0")/.."
out=deploy/k8s/pipelines.yaml
{
	echo "# The pipelines of pipelines/*.yaml, byte for byte, written by"
	echo "# scripts/k8s-pipelines.sh (tests/test_deploy.py compares them and applies"
	echo "# each to a real atelierd). The apply-pipelines Job sends them to atelierd."
	echo "apiVersion: v1"
	echo "kind: ConfigMap"
	echo "metadata:"
	echo "  name: atelier-pipelines"
	echo "data:"
	for f in pipelines/*.yaml; do
		echo "  $(basename "$f"): |"
		sed 's/^\(.\)/    \1/' "$f"
	done
} >"$out.tmp"
mv "$out.tmp" "$out"

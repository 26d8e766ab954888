"""Deployment tests: the Helm chart, the kustomize manifests, the CRD copies and the image
recipe, checked offline (marker ``deploy``)."""

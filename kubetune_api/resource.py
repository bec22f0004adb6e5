"""The names of the FineTuneJob API resource."""

from __future__ import annotations

API_GROUP = "kubetune.io"
API_VERSION = "v1alpha1"
API_VERSION_STRING = f"{API_GROUP}/{API_VERSION}"  # what manifests write as apiVersion
KIND = "FineTuneJob"
LIST_KIND = f"{KIND}List"
PLURAL = "finetunejobs"
SINGULAR = "finetunejob"
SHORT_NAME = "ftj"
CATEGORY = "kubetune"
CRD_NAME = f"{PLURAL}.{API_GROUP}"

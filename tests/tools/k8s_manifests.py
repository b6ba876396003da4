"""Reads the Kubernetes manifests under the folders given and prints, as one JSON object, what
tests/it/deploy.rs checks about them (it has no YAML parser of its own):

    {"resources": [{"file", "kind", "name", "namespace", "annotations"}, ...],
     "configs": {"<namespace>/<configmap>": {"portcullis.toml": "<text>", ...}, ...},
     "containers": [{"file", "workload", "name", "sidecar", "limits", "requests",
                     "files": ["<absolute path of each mounted file>", ...],
                     "sources": {"<absolute path>": "<configMap|secret>/<name>/<key>", ...}}]}

A container's "files" are the files its volume mounts put in it, from projected, configMap and
secret volumes listed item by item (the only way the manifests here mount them). "sidecar" is true
for an init container with restartPolicy Always.

Usage: python k8s_manifests.py DIR...
"""

import json
import os
import sys

import yaml


def manifests(folder):
    for root, _dirs, files in os.walk(folder):
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml":
                path = os.path.join(root, name)
                with open(path) as f:
                    for doc in yaml.safe_load_all(f):
                        if doc:
                            yield path, doc


def volume_files(volume):
    """(path inside the volume, source) of every item a volume lists."""
    sources = []
    if "projected" in volume:
        sources = volume["projected"]["sources"]
    elif "configMap" in volume or "secret" in volume:
        sources = [volume]
    for source in sources:
        for kind in ("configMap", "secret"):
            if kind in source:
                ref = source[kind]
                name = ref.get("name") or ref.get("secretName")
                for item in ref.get("items", []):
                    yield item["path"], f"{kind}/{name}/{item['key']}"


def main():
    out = {"resources": [], "configs": {}, "containers": []}
    for folder in sys.argv[1:]:
        for path, doc in manifests(folder):
            meta = doc.get("metadata", {})
            namespace = meta.get("namespace", "default")
            out["resources"].append({
                "file": path,
                "kind": doc["kind"],
                "name": meta["name"],
                "namespace": namespace,
                "annotations": meta.get("annotations", {}),
            })
            if doc["kind"] == "ConfigMap":
                out["configs"][f"{namespace}/{meta['name']}"] = doc.get("data", {})
            if doc["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
                continue
            pod = doc["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            both = [(c, True) for c in pod.get("initContainers", [])]
            both += [(c, False) for c in pod.get("containers", [])]
            for container, init in both:
                files, sources = [], {}
                for mount in container.get("volumeMounts", []):
                    for inner, source in volume_files(volumes[mount["name"]]):
                        full = mount["mountPath"].rstrip("/") + "/" + inner
                        files.append(full)
                        sources[full] = f"{namespace}/{source}"
                resources = container.get("resources", {})
                out["containers"].append({
                    "file": path,
                    "workload": f"{namespace}/{meta['name']}",
                    "name": container["name"],
                    "sidecar": init and container.get("restartPolicy") == "Always",
                    "limits": {k: str(v) for k, v in resources.get("limits", {}).items()},
                    "requests": {k: str(v) for k, v in resources.get("requests", {}).items()},
                    "files": files,
                    "sources": sources,
                })
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()

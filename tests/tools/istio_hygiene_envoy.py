"""Writes an Envoy config that is deploy/envoy/envoy.yaml with its identity hygiene replaced by
the EnvoyFilter patch of deploy/istio/portcullis.yaml, merged into the HTTP connection manager
as Istio merges it (operation MERGE): the header_mutation filter and
common_http_protocol_options of the Envoy recipe go, the patch's fields come in.

    istio_hygiene_envoy.py ENVOY_YAML ISTIO_YAML OUT_YAML

tests/it/edges/mesh.rs runs the edge scenario on the result, so the patch is proved on a real
Envoy even though no Istio runs here.
"""

import sys

import yaml


def main(envoy_path, istio_path, out_path):
    with open(envoy_path) as f:
        envoy = yaml.safe_load(f)
    with open(istio_path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    (patch,) = [
        p["patch"]["value"]["typed_config"]
        for d in docs
        if d["kind"] == "EnvoyFilter"
        for p in d["spec"]["configPatches"]
        if p["patch"]["operation"] == "MERGE"
    ]
    (hcm,) = [
        f["typed_config"]
        for listener in envoy["static_resources"]["listeners"]
        for chain in listener["filter_chains"]
        for f in chain["filters"]
        if f["name"] == "envoy.filters.network.http_connection_manager"
    ]
    assert hcm["@type"] == patch["@type"], "the patch is not for the connection manager"
    hcm["http_filters"] = [
        f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.header_mutation"
    ]
    del hcm["common_http_protocol_options"]
    hcm.update({k: v for k, v in patch.items() if k != "@type"})
    with open(out_path, "w") as f:
        yaml.safe_dump(envoy, f)


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Checks the Istio objects of a YAML file against Istio's CRD schemas, as the pydantic models
that cloudcoil-models-istio generates from them (pinned in requirements.txt beside this file).

    validate_istio.py FILE

Every AuthorizationPolicy (security.istio.io/v1) and EnvoyFilter (networking.istio.io/v1alpha3)
must load into its model and dump back to exactly what the file says: the models ignore fields
they do not know, so a misspelt or unknown field shows as a difference. Other kinds (the
IstioOperator carrying meshConfig has no model) are listed as not checked. Exit 0 when every
checked object passes, 1 otherwise (with the reason), 2 when nothing could be checked.
tests/it/edges/mesh.rs runs it on deploy/istio/.
"""

import sys

import yaml
from cloudcoil.models.istio.networking import v1alpha3 as networking
from cloudcoil.models.istio.security import v1 as security

MODELS = {
    ("security.istio.io/v1", "AuthorizationPolicy"): security.AuthorizationPolicy,
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): networking.EnvoyFilter,
}


def main(path):
    checked = failed = 0
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = doc.get("metadata", {}).get("name", "")
        model = MODELS.get(key)
        if model is None:
            print(f"not checked: {key[1]} {name} ({key[0]})")
            continue
        checked += 1
        try:
            back = model.model_validate(doc).model_dump(
                exclude_none=True, by_alias=True, mode="json"
            )
        except Exception as e:  # pydantic's ValidationError, reported as is
            failed += 1
            print(f"FAIL {key[1]} {name}: {e}")
            continue
        if back != doc:
            failed += 1
            print(f"FAIL {key[1]} {name}: fields the schema does not know, or changed:")
            print(f"  file:   {doc}\n  schema: {back}")
        else:
            print(f"ok: {key[1]} {name}")
    if checked == 0:
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

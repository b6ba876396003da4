"""Drives Portcullis with `coder-api` (PyPI: Python bindings for Coder's API), unchanged, as a
new user of that library would, and reports what each call got.

    python drive.py <base url> <owner session token>

Prints one JSON object per line: {"call", "status", "forwarded", "body"}. `forwarded` is true
when the answer came from the upstream application (the test's echo upstream, which describes
the request it received) rather than from Portcullis. tests/it/coder_client.rs judges the
report.
"""
import json
import sys

import coder
from coder import Organization, Template, User, Workspace

base, owner = sys.argv[1], sys.argv[2]
coder.api_domain = base.rstrip("/") + "/api/v2/"
coder.set_token(owner)


def report(call, response):
    try:
        body = response.json()
    except ValueError:
        body = response.text
    forwarded = isinstance(body, dict) and {"method", "path", "headers"} <= body.keys()
    print(json.dumps({"call": call, "status": response.status_code, "forwarded": forwarded,
                      "body": body}), flush=True)
    return body


report("User.auth_methods", User.auth_methods())
report("User.list", User.list())
orgs = report("Organization.list", Organization.list())
default = next(o for o in orgs if o.get("is_default"))
report("Organization.get", Organization.get(default["id"]))

# The library has no password argument: its users sign in some other way (login type "none",
# Coder's `disable_login`), which is its default.
user = report("User.create", User.create(
    email="dana@example.com", name="Dana", username="dana", organization_ids=[default["id"]]))
report("User.get_or_create (exists)", User.get_or_create(
    email="dana@example.com", name="Dana", username="dana"))
report("User.get", User.get("dana"))
report("User.get_organizations", User.get_organizations("dana"))
report("User.suspend", User.suspend("dana"))
report("User.activate", User.activate("dana"))
report("User.create_session_key", User.create_session_key("dana"))
token = report("User.create_token", User.create_token("dana", token_name="ci", scope="all"))
report("User.get_tokens", User.get_tokens("dana"))
named = report("User.get_token (by name)", User.get_token("dana", key_name="ci"))
key_id = named.get("id", "") if isinstance(named, dict) else ""
report("User.get_token (by id)", User.get_token("dana", token_id=key_id))
report("User.delete_token", User.delete_token("dana", key_id))

acme = report("Organization.create", Organization.create("acme", display_name="Acme"))
report("Organization.get (new)", Organization.get(acme.get("id", "none")))
report("Organization.delete", Organization.delete(acme.get("id", "none")))
report("Organization.delete (default)", Organization.delete(default["id"]))

report("User.delete", User.delete("dana"))
report("User.get (deleted)", User.get("dana"))

# Calls about things Portcullis does not hold: the application behind it answers them.
report("User.ssh_key", User.ssh_key("admin"))
report("Workspace.list", Workspace.list())
report("Template.list", Template.list())

//! User management end to end, over real sockets, on every store: `POST /users`,
//! `DELETE /users/{user}`, `PUT /users/{user}/password`, `PUT /users/{user}/status/suspend`
//! and `/activate`, `POST /users/{user}/keys`, the directory (`GET /users`, login types,
//! profiles, organizations) — their answers, Coder's messages, who may call
//! them, and what they revoke, on one Portcullis and on two sharing one Redis.
//!
//! The Redis runs use the servers `scripts/test` starts, under a random key prefix each,
//! and fail loudly when it does not answer. Users with roles the API cannot yet grant
//! (`auditor`, `user-admin`, a second `owner`) are made through the running app's own
//! `portcullis::users` operations, the ones the CLI uses.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::world::*;
use crate::common::*;
use portcullis::store::{LoginType, UserStatus};
use portcullis::users::{NewKey, NewUser};

mod create;
mod delete;
mod directory;
mod keys;
mod owners;
mod password;
mod replicas;
mod resolution;
mod status;

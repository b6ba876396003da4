//! config

use super::*;

/// A config for an in-process Portcullis forwarding to `upstream` (a URL), with extra lines in
/// `[server]` and `[upstream]`. `server` may end with a `[server.tls]` table.
pub fn config(upstream: &str, server: &str, upstream_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n\n\
         [upstream]\nurl = \"{upstream}\"\n{upstream_extra}\n\n\
         [policy]\ndefault = \"public\"\n"
    )
}

/// `http://ADDR`.
pub fn http_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

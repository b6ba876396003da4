//! `portcullis health`: one HTTP/1.1 `GET` of the admin listener's `/healthz` (or `/readyz`), for
//! a container `HEALTHCHECK` or an exec probe where there is no curl (the distroless image).
//!
//! Which listener: `--admin ADDR`; else `server.admin_listen` of the config (`--config` or
//! `PORTCULLIS_CONFIG`, environment overrides included), asked on loopback when it listens on
//! all addresses; else `127.0.0.1:9901`. The whole exchange, connect included, must finish
//! within `--timeout`. Exit 0 on a `2xx` answer, 1 on any other status, a refused connection, a
//! timeout or a config that does not load; the answer's first line goes to stdout (success)
//! or stderr (failure), so that `docker inspect` shows why.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use portcullis::config::Config;

/// Where the admin listener is when neither `--admin` nor a config says.
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);

/// The most of an answer read: the admin answers are one short line.
const MAX_ANSWER: u64 = 4096;

/// Runs the check; see the module doc.
pub fn run(
    admin: Option<SocketAddr>,
    config: Option<&Path>,
    ready: bool,
    timeout: Duration,
) -> ExitCode {
    let addr = match (admin, config) {
        (Some(addr), _) => addr,
        (None, Some(path)) => match Config::load(path, std::env::vars()) {
            Ok(config) => reachable(config.server.admin_listen),
            Err(e) => {
                eprintln!("health: config error: {e}");
                return ExitCode::from(1);
            }
        },
        (None, None) => DEFAULT_ADMIN,
    };
    let path = if ready { "/readyz" } else { "/healthz" };
    match get(addr, path, timeout) {
        Ok((status, line)) if (200..300).contains(&status) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Ok((status, line)) => {
            eprintln!("health: http://{addr}{path}: {status} {line}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("health: http://{addr}{path}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The address to connect to for a listener bound to `addr`: loopback for an unspecified
/// address (0.0.0.0 or ::), which cannot be connected to.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// `GET path` on `addr`, all within `timeout`: the status code and the body's first line.
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {}", humantime::format_duration(timeout)))
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // The admin listener closes the connection after its answer (Connection: close), so the
    // answer is everything up to the end of the stream.
    let mut answer = Vec::new();
    let mut reader = (&stream).take(MAX_ANSWER);
    let mut buf = [0u8; 1024];
    loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    parse(&answer)
}

/// The status code of an HTTP/1.x answer, and the first line of its body.
fn parse(answer: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| "not an HTTP answer".to_owned())?;
    Ok((status, body.lines().next().unwrap_or("").to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_for_their_status_and_first_body_line() {
        for (answer, expected) in [
            (
                &b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nready\n"[..],
                Ok((200, "ready")),
            ),
            (
                b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: shutting down\n",
                Ok((503, "not ready: shutting down")),
            ),
            (b"HTTP/1.0 404 Not Found\r\n\r\n", Ok((404, ""))),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Err("not an HTTP answer")),
            (b"", Err("not an HTTP answer")),
        ] {
            let got = parse(answer);
            assert_eq!(
                got.as_ref()
                    .map(|(s, l)| (*s, l.as_str()))
                    .map_err(|e| e.as_str()),
                expected,
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[test]
    fn an_unspecified_listener_is_asked_on_loopback() {
        for (bound, asked) in [
            ("0.0.0.0:9901", "127.0.0.1:9901"),
            ("[::]:9901", "[::1]:9901"),
            ("10.1.2.3:9901", "10.1.2.3:9901"),
            ("127.0.0.1:1234", "127.0.0.1:1234"),
        ] {
            assert_eq!(
                reachable(bound.parse().unwrap()),
                asked.parse().unwrap(),
                "{bound}"
            );
        }
    }
}

//! The shutdown signal: SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).

/// Completes when the process receives SIGTERM or SIGINT.
pub async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            // Without handlers the default action (exit) still applies; wait forever here.
            tracing::error!("could not install signal handlers");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "received"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "received"),
    }
}

//! Serving an HTTP app on the listening socket systemd passes a
//! socket-activated service (`torch-metrics.socket`, `torch-web.socket`):
//! a TCP address or a unix socket, as the admin set `ListenStream=`.

use axum::Router;

/// Why the app cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Started by hand, not through its socket unit.
    #[error("no listening socket from systemd; enable the socket instead of running this program: systemctl enable --now {0}")]
    NoSocket(String),
    /// The socket could not be used or served.
    #[error("serving on the socket systemd passed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves `app` on the first socket systemd passed until it fails;
/// `socket_unit` names the unit to enable when there is none.
pub async fn serve(app: Router, socket_unit: &str) -> Result<(), ListenError> {
    let mut fds = listenfd::ListenFd::from_env();
    if let Ok(Some(l)) = fds.take_tcp_listener(0) {
        l.set_nonblocking(true)?;
        axum::serve(tokio::net::TcpListener::from_std(l)?, app).await?;
    } else if let Ok(Some(l)) = fds.take_unix_listener(0) {
        l.set_nonblocking(true)?;
        axum::serve(tokio::net::UnixListener::from_std(l)?, app).await?;
    } else {
        return Err(ListenError::NoSocket(socket_unit.to_string()));
    }
    Ok(())
}

//! SIGTERM handled like Ctrl-C (Slurm, Kubernetes and systemd stop jobs with it).

/// SIGTERM as a stream (Slurm, Kubernetes and systemd stop jobs with it): handled like
/// Ctrl-C. Where it cannot be installed, a stream that never fires.
pub(super) fn terminate_signal() -> TermSignal {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => TermSignal(Some(s)),
            Err(e) => {
                tracing::warn!("cannot handle SIGTERM ({e}); it will stop the run uncleanly");
                TermSignal(None)
            }
        }
    }
    #[cfg(not(unix))]
    {
        TermSignal(None)
    }
}

pub(super) struct TermSignal(
    #[cfg(unix)] Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] Option<()>,
);

impl TermSignal {
    pub(super) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.0.as_mut() {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

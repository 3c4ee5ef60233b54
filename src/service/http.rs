//! `/metrics` (Prometheus text), `/healthz` and `/readyz` on a plain
//! listener thread: three fixed GETs need no web framework.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

/// What the probes report. Healthy: the main loop ran in the last minute
/// (a stuck worker is restarted). Ready: consuming, not backing off from a
/// failing archive.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    last_tick_ms: AtomicI64,
}

const STUCK_MS: i64 = 60_000;

impl Health {
    pub fn tick(&self) {
        self.last_tick_ms.store(crate::sink::now_ms(), Ordering::Relaxed);
    }

    pub fn set_ready(&self, on: bool) {
        self.ready.store(on, Ordering::Relaxed);
    }

    fn healthy(&self) -> bool {
        let last = self.last_tick_ms.load(Ordering::Relaxed);
        last == 0 || crate::sink::now_ms() - last < STUCK_MS
    }
}

/// Installs the Prometheus recorder and serves it on `listen`.
pub fn serve(listen: &str, health: Arc<Health>) -> std::io::Result<std::net::SocketAddr> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0])
        .and_then(|b| b.install_recorder())
        .map_err(std::io::Error::other)?;
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new().name("trailship-http".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if let Err(e) = answer(stream, &handle, &health) {
                tracing::debug!(error = %e, "metrics request failed");
            }
        }
    })?;
    Ok(addr)
}

fn answer(stream: TcpStream, metrics: &PrometheusHandle, health: &Health) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Drain the headers so the client sees a clean close.
    let mut h = String::new();
    while reader.read_line(&mut h)? > 2 {
        h.clear();
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        "/healthz" if health.healthy() => ("200 OK", "text/plain", "ok\n".into()),
        "/healthz" => ("503 Service Unavailable", "text/plain", "main loop stuck\n".into()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => ("200 OK", "text/plain", "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", "text/plain", "not ready\n".into()),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    };
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

//! Reading one counter from a server's Prometheus `/metrics` page over a
//! plain HTTP/1.0 GET on loopback (no HTTP client dependency needed).

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The sum of every sample of `name` (all label sets) at `url`
/// (`http://127.0.0.1:PORT/metrics`).
pub async fn scrape(url: &str, name: &str) -> Result<f64> {
    let rest = url
        .strip_prefix("http://")
        .context("metrics URL must be http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let addr = tokio::net::lookup_host(authority)
        .await?
        .find(|a| a.ip().is_loopback())
        .context("metrics URL must be on loopback")?;
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    let status = body.split_whitespace().nth(1);
    if !body.starts_with("HTTP/1.") || status != Some("200") {
        bail!(
            "GET {url} failed: {}",
            body.lines().next().unwrap_or_default()
        );
    }
    Ok(sum_samples(&body, name))
}

/// Sums the samples named exactly `name` in a Prometheus text page.
pub fn sum_samples(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            l.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_of_the_named_counter_only() {
        let page = "# TYPE attractio_store_saves_total counter\n\
                    attractio_store_saves_total{result=\"ok\"} 40\n\
                    attractio_store_saves_total{result=\"err\"} 2\n\
                    attractio_store_saves_total_bytes 999\n";
        assert_eq!(sum_samples(page, "attractio_store_saves_total"), 42.0);
        assert_eq!(sum_samples(page, "missing"), 0.0);
    }
}

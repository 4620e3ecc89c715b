//! The hub's metrics on the real sandbox: `torch-metrics.socket` enabled, a scrape over
//! HTTP on loopback starts `torch-metrics.service`, the real Prometheus scrapes it, and
//! every metric docs/metrics.md names is there with its type and the fleet's values.
//! Only the operator and the metrics user may read them.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use torch_tests::fleet::boot_hub;
use torch_tests::{wait_until, Sandbox};

/// Where scripts/setup-debian.sh unpacks Prometheus from Debian's package.
const PROMETHEUS: &str = "/opt/torch-test/prometheus/usr/bin/prometheus";

/// Prometheus scraping the socket's address every second.
const PROMETHEUS_YML: &str = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: torch\n    static_configs:\n      - targets: ['127.0.0.1:9466']\n";

/// The socket's address as the package sets it.
const URL: &str = "http://127.0.0.1:9466/metrics";

/// Every metric and its type, as the text names them. Tokens and cost show only for
/// agents whose CLI says them (`torch_agent_tokens`, `torch_agent_cost_usd`): checked
/// with the real Claude Code in tests/tests/claude.rs.
const METRICS: [(&str, &str); 12] = [
    ("torch_agent_state", "gauge"),
    ("torch_agent_queue_depth", "gauge"),
    ("torch_agent_messages_delivered", "counter"),
    ("torch_agent_messages_failed", "counter"),
    ("torch_delivery_latency_seconds", "histogram"),
    ("torch_agent_restarts", "counter"),
    ("torch_agent_last_output_age_seconds", "gauge"),
    ("torch_agents", "gauge"),
    ("torch_messages_queued", "gauge"),
    ("torch_store_bytes", "gauge"),
    ("torch_checkins_pending", "gauge"),
    ("torch_checkins_late_seconds", "gauge"),
];

fn scrape(sb: &Sandbox) -> Result<String> {
    sb.run(&["curl", "-sSf", "--max-time", "15", URL])
}

#[test]
fn metrics_are_served_on_loopback_and_scraped_by_prometheus() -> Result<()> {
    let sb = boot_hub("metrics", "")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("e1", "engineer", Some("boss"))?;
    sb.torch(&["send", "--wait", "e1", "hello"])?;
    sb.torch(&["schedule", "e1", "--in", "1h", "--note", "later"])?;
    // Nothing listens until the admin enables the socket.
    ensure!(
        scrape(&sb).is_err(),
        "metrics served before the socket was enabled"
    );
    sb.systemctl(&["enable", "--now", "torch-metrics.socket"])?;
    let text = scrape(&sb)?;
    ensure!(
        sb.systemctl(&["is-active", "torch-metrics.service"])?
            .trim()
            == "active",
        "the scrape did not start torch-metrics.service"
    );
    for (name, kind) in METRICS {
        ensure!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no {kind} {name} in:\n{text}"
        );
    }
    for line in [
        "torch_agent_state{agent=\"e1\",state=\"idle\"} 1",
        "torch_agent_messages_delivered_total{agent=\"e1\"} 1",
        "torch_delivery_latency_seconds_count{agent=\"e1\"} 1",
        "torch_agents{state=\"idle\"} 2",
        "torch_checkins_pending 1",
    ] {
        ensure!(text.contains(line), "no {line} in:\n{text}");
    }
    prometheus_scrapes_them(&sb)?;
    states_follow_the_fleet(&sb)?;
    only_the_operator_and_the_metrics_user_read_them(&sb)
}

/// The real Prometheus scrapes the endpoint (with OpenMetrics, which it asks for first)
/// and knows every metric by its type.
fn prometheus_scrapes_them(sb: &Sandbox) -> Result<()> {
    sb.write_file("/run/prom/prometheus.yml", PROMETHEUS_YML.as_bytes(), 0o644)?;
    sb.run(&[
        "systemd-run",
        "--unit",
        "test-prometheus",
        PROMETHEUS,
        "--config.file=/run/prom/prometheus.yml",
        "--storage.tsdb.path=/run/prom/data",
        "--web.listen-address=127.0.0.1:9090",
    ])?;
    let api = |path: &str| -> Result<serde_json::Value> {
        let url = format!("http://127.0.0.1:9090/api/v1/{path}");
        Ok(serde_json::from_str(&sb.run(&["curl", "-sSf", &url])?)?)
    };
    let mut targets = serde_json::Value::Null;
    let r = wait_until(
        "Prometheus scraped the hub",
        Duration::from_secs(60),
        || {
            targets = api("targets").unwrap_or_default();
            Ok(targets["data"]["activeTargets"][0]["health"] == "up")
        },
    );
    r.with_context(|| format!("{targets:#}"))?;
    let metadata = api("metadata")?;
    for (name, kind) in METRICS {
        let seen = &metadata["data"][name][0]["type"];
        ensure!(
            seen == kind,
            "Prometheus reads {name} as {seen}, not {kind}: {metadata:#}"
        );
    }
    let query = "query=torch_agent_state%7Bagent%3D%22e1%22%2Cstate%3D%22idle%22%7D";
    let answer = api(&format!("query?{query}"))?;
    ensure!(answer["data"]["result"][0]["value"][1] == "1", "{answer:#}");
    Ok(())
}

/// A stopped agent shows down at the next scrape.
fn states_follow_the_fleet(sb: &Sandbox) -> Result<()> {
    sb.torch(&["stop", "e1"])?;
    let mut text = String::new();
    let r = wait_until("e1 down in the metrics", Duration::from_secs(20), || {
        text = scrape(sb)?;
        Ok(text.contains("torch_agent_state{agent=\"e1\",state=\"down\"} 1"))
    });
    r.with_context(|| text.clone())
}

/// An agent may not read the metrics (they name the whole fleet); the metrics user may
/// read them and nothing else.
fn only_the_operator_and_the_metrics_user_read_them(sb: &Sandbox) -> Result<()> {
    let (ok, said) = sb.torch_in_unit("boss", &["metrics"])?;
    ensure!(
        !ok && said.contains("may not read the fleet's metrics"),
        "{said}"
    );
    let as_metrics = |args: &str| {
        sb.exec(&[
            "sh",
            "-c",
            &format!("runuser -u torch-metrics -- torch {args}"),
        ])
    };
    let out = as_metrics("metrics")?;
    ensure!(out.status.success(), "{out:?}");
    let out = as_metrics("status")?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "the metrics user read the status: {said}"
    );
    Ok(())
}

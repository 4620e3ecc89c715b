//! torch.toml with drop-ins, as the hub and `torch config check` read it.

use anyhow::{ensure, Result};
use torch_tests::Sandbox;

#[test]
fn drop_ins_are_merged_and_checked() -> Result<()> {
    let sb = Sandbox::boot("config")?;
    sb.install_torch()?;
    sb.write_file(
        "/etc/torch/torch.toml",
        b"[quotas]\nmax_fleet = 10\nmax_children = 5\n",
        0o644,
    )?;
    sb.write_file(
        "/etc/torch/torch.toml.d/50-small.toml",
        b"[quotas]\nmax_fleet = 2\n",
        0o644,
    )?;
    let out = sb.torch(&["config", "check"])?;
    ensure!(
        out.contains("/etc/torch/torch.toml.d/50-small.toml")
            && out.contains("max_fleet = 2")
            && out.contains("max_children = 5"),
        "{out}"
    );
    // The hub reads the same files.
    sb.start_hub()?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm", "project-manager", Some("boss"))?;
    let (ok, out) = sb.torch_status(&[
        "spawn",
        "third",
        "--role",
        "engineer",
        "--parent",
        "pm",
        "--workdir",
        "/srv/work",
        "--",
        "/usr/local/bin/torch-test-agent",
        "echo",
    ])?;
    ensure!(
        !ok && out.contains("the limit (quotas.max_fleet in torch.toml) is 2"),
        "{out}"
    );

    // A bad drop-in is named with its line.
    sb.write_file(
        "/run/torch/torch.toml.d/60-bad.toml",
        b"[quotas]\n\nmax_fleat = 3\n",
        0o644,
    )?;
    let (ok, out) = sb.torch_status(&["config", "check"])?;
    ensure!(
        !ok && out.contains("/run/torch/torch.toml.d/60-bad.toml:3: unknown field `max_fleat`"),
        "{out}"
    );
    Ok(())
}

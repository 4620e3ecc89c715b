//! An agent's environment file (an API key) against a real systemd: the
//! program sees the variables, nothing shows their values, the file is its
//! writer's alone, a bad line is refused, and retiring removes it.

use std::time::Duration;

use anyhow::{ensure, Result};
use torch_tests::{wait_until, Sandbox};

const SECRET: &str = "s3cr3t value";
/// Every character systemd would unescape or expand in a value.
const ODD: &str = r#"a"b\c`d$e'f"#;
const ENV_FILE: &str = "# the agent's API key\nSECRET_TOKEN=s3cr3t value\nODD=a\"b\\c`d$e'f\n";

/// The program: writes what it sees of the variables where the test reads
/// it, then waits; `.seen` last, as the sign it is done.
fn command(name: &str) -> String {
    format!(
        "printf %s \"$ODD\" > /var/lib/torch-agent/{name}/odd; \
         printf %s \"$SECRET_TOKEN\" > /var/lib/torch-agent/{name}/seen; exec sleep infinity"
    )
}

fn sandbox() -> Result<Sandbox> {
    let sb = Sandbox::boot("agent-env")?;
    sb.install_torch()?;
    sb.start_hub()?;
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    sb.write_file("/tmp/agent.env", ENV_FILE.as_bytes(), 0o644)?;
    Ok(sb)
}

/// Waits for the program of `name` to report, and checks what it saw.
fn program_saw_the_variables(sb: &Sandbox, name: &str) -> Result<()> {
    let seen = format!("/var/lib/torch-agent/{name}/seen");
    wait_until("the program to run", Duration::from_secs(20), || {
        Ok(sb.exec(&["test", "-s", &seen])?.status.success())
    })?;
    let got = String::from_utf8(sb.read_file(&seen)?)?;
    ensure!(got == SECRET, "the program saw SECRET_TOKEN={got:?}");
    let odd = String::from_utf8(sb.read_file(&format!("/var/lib/torch-agent/{name}/odd"))?)?;
    ensure!(odd == ODD, "the program saw ODD={odd:?}, not {ODD:?}");
    Ok(())
}

/// The value is nowhere a user or the journal can see it.
fn value_is_not_shown(sb: &Sandbox, name: &str) -> Result<()> {
    let places = [
        ("the journal", sb.journal(&["-b", "-o", "verbose"])?),
        ("torch status", sb.torch(&["status", "--json"])?),
        ("torch list", sb.torch(&["list", "--json"])?),
        ("ps", sb.run(&["ps", "-eo", "args"])?),
        (
            "the unit",
            sb.systemctl(&["show", &format!("torch-agent@{name}.service")])?,
        ),
        (
            "the definition",
            sb.sh(&format!("cat /var/lib/torch/agents/{name}.toml /etc/torch/agents/{name}.toml 2>/dev/null || true"))?,
        ),
    ];
    for (place, text) in places {
        ensure!(!text.contains("s3cr3t"), "{place} shows the value:\n{text}");
    }
    Ok(())
}

#[test]
fn spawned_agent_gets_its_environment_file() -> Result<()> {
    let sb = sandbox()?;
    let cmd = command("api-keyed");
    sb.torch(&[
        "spawn",
        "api-keyed",
        "--role",
        "orchestrator",
        "--workdir",
        "/srv/work",
        "--env-file",
        "/tmp/agent.env",
        "--",
        "sh",
        "-c",
        &cmd,
    ])?;
    program_saw_the_variables(&sb, "api-keyed")?;
    let stored = "/var/lib/torch/agents/api-keyed.env";
    let owner = sb.run(&["stat", "-c", "%a %U:%G", stored])?;
    ensure!(owner.trim() == "600 torch:torch", "{stored} is {owner}");
    value_is_not_shown(&sb, "api-keyed")?;

    sb.torch(&["retire", "api-keyed"])?;
    ensure!(
        !sb.exec(&["test", "-e", stored])?.status.success(),
        "retire left {stored}"
    );
    value_is_not_shown(&sb, "api-keyed")
}

#[test]
fn bad_lines_are_refused_without_their_value() -> Result<()> {
    let sb = sandbox()?;
    sb.write_file("/tmp/bad.env", b"OK=1\nsk-s3cr3t-pasted\n", 0o644)?;
    let (ok, said) = sb.torch_status(&[
        "spawn",
        "bad",
        "--role",
        "orchestrator",
        "--workdir",
        "/srv/work",
        "--env-file",
        "/tmp/bad.env",
        "--",
        "sh",
    ])?;
    ensure!(!ok, "a bad environment file was accepted: {said}");
    ensure!(
        said.contains("/tmp/bad.env") && said.contains("line 2") && !said.contains("s3cr3t"),
        "the refusal should name the file and line, not the value: {said}"
    );
    // The hub checks too: a caller may skip the CLI.
    let out = sb.exec(&[
        "busctl",
        "call",
        "org.torch.Torch1",
        "/org/torch/Torch1",
        "org.torch.Manager1",
        "SpawnWithEnv",
        "sssssassss",
        "bad",
        "orchestrator",
        "",
        "/srv/work",
        "",
        "1",
        "sh",
        "",
        "operator",
        "OK=1\nNOTIFY_SOCKET=s3cr3t",
    ])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the hub accepted a reserved name");
    ensure!(
        said.contains("line 2") && said.contains("NOTIFY_SOCKET") && !said.contains("s3cr3t"),
        "the hub's refusal should name the line and variable, not the value: {said}"
    );
    let left = sb.sh("ls /var/lib/torch/agents/ 2>/dev/null || true")?;
    ensure!(!left.contains("bad."), "a refused spawn left files: {left}");
    ensure!(
        !sb.journal(&["-b", "-o", "verbose"])?.contains("s3cr3t"),
        "the journal shows a refused value"
    );
    Ok(())
}

#[test]
fn admin_agent_gets_its_environment_file() -> Result<()> {
    let sb = sandbox()?;
    let cmd = command("admin-keyed");
    sb.define_agent(
        "admin-keyed",
        &format!("command = [\"sh\", \"-c\", {cmd:?}]\nrole = \"orchestrator\"\n"),
    )?;
    let said = sb.torch(&["env", "admin-keyed", "/tmp/agent.env"])?;
    ensure!(
        !said.contains("s3cr3t"),
        "torch env shows the value: {said}"
    );
    let stored = "/etc/torch/agents/admin-keyed.env";
    let owner = sb.run(&["stat", "-c", "%a %U:%G", stored])?;
    ensure!(owner.trim() == "600 root:root", "{stored} is {owner}");
    sb.torch(&["start", "admin-keyed"])?;
    program_saw_the_variables(&sb, "admin-keyed")?;
    value_is_not_shown(&sb, "admin-keyed")?;
    sb.torch(&["env", "admin-keyed", "--remove"])?;
    ensure!(
        !sb.exec(&["test", "-e", stored])?.status.success(),
        "torch env --remove left {stored}"
    );
    Ok(())
}

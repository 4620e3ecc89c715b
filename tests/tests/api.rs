//! The hub's D-Bus API as it runs, against what docs/ says of it.

use anyhow::{ensure, Context, Result};
use torch_tests::{workspace_root, Sandbox};

/// The `<interface name="NAME">` element of an introspection document,
/// one trimmed line per line.
fn interface(xml: &str, name: &str) -> Result<Vec<String>> {
    let start = xml
        .find(&format!("<interface name=\"{name}\">"))
        .with_context(|| format!("no interface {name} in:\n{xml}"))?;
    let len = xml[start..]
        .find("</interface>")
        .context("unterminated interface")?;
    Ok(xml[start..start + len + "</interface>".len()]
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

#[test]
fn the_running_interface_is_the_documented_one() -> Result<()> {
    let sb = Sandbox::boot("api")?;
    sb.install_torch()?;
    sb.start_hub()?;
    let xml = sb.run(&[
        "busctl",
        "--xml-interface",
        "introspect",
        torch_api::BUS_NAME,
        torch_api::OBJECT_PATH,
    ])?;
    let running = interface(&xml, torch_api::INTERFACE)?;
    let doc_path = workspace_root().join("docs/org.torch.Manager1.xml");
    let doc = std::fs::read_to_string(&doc_path)
        .with_context(|| format!("reading {}", doc_path.display()))?;
    let documented = interface(&doc, torch_api::INTERFACE)?;
    ensure!(
        running == documented,
        "the running hub's interface differs from docs/org.torch.Manager1.xml; \
         if the change is meant, write this into it:\n{}",
        running.join("\n")
    );
    // Every method has its row in docs/dbus.md.
    let table = std::fs::read_to_string(workspace_root().join("docs/dbus.md"))?;
    for line in &running {
        if let Some(rest) = line.strip_prefix("<method name=\"") {
            let name = rest.split('"').next().unwrap_or_default();
            ensure!(
                table.contains(&format!("| `{name}` |")),
                "docs/dbus.md has no row for {name}"
            );
        }
    }
    Ok(())
}

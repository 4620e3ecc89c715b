//! How the hub's answers are shown: the fleet as a tree, messages and
//! check-ins as tables, times in local time.

use anyhow::{Context, Result};
use torch_api::{AgentEntry, AgentStatus, Directory, FleetStatus, Message, PoolStatus, Schedule};

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    serde_json::from_str(json)
        .with_context(|| format!("the hub sent {what} this torch cannot read"))
}

/// `torch status`: the hub's answer as JSON, or as the tree and the
/// projects' last commits.
pub fn status(json: bool) -> Result<()> {
    let s = crate::hub_call(async |h| h.status().await)?;
    if json {
        println!("{s}");
        return Ok(());
    }
    print_status(&s)?;
    // A hub from before pools has no `Pools`: nothing to show then.
    if let Ok(pools) = crate::hub_call(async |h| h.pools().await) {
        print_pools(&parse::<Vec<PoolStatus>>(&pools, "pools")?);
    }
    let projects = crate::autocommit::last_commits();
    if !projects.is_empty() {
        println!();
        println!("{:<40} {:<20} LAST COMMIT", "PROJECT", "BRANCH");
        for (root, branch, when) in projects {
            println!("{:<40} {:<20} {when}", root.display(), branch);
        }
    }
    Ok(())
}

fn print_pools(pools: &[PoolStatus]) {
    if pools.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<24} {:>4} {:>6} {:>7}  WHY",
        "POOL", "SIZE", "TARGET", "MIN-MAX"
    );
    for p in pools {
        let bounds = format!("{}-{}", p.min, p.max);
        println!(
            "{:<24} {:>4} {:>6} {:>7}  {}",
            p.name, p.size, p.target, bounds, p.why
        );
    }
}

/// `torch agents`: the fleet's directory, those with every skill in
/// `skills` (and idle, with `idle`), as a table or as JSON.
pub fn agents(skills: &[String], idle: bool, json: bool) -> Result<()> {
    for s in skills {
        torch_core::definition::check_skill(s).map_err(anyhow::Error::msg)?;
    }
    let text = crate::hub_call(async |h| h.agents().await)?;
    let mut dir: Directory = parse(&text, "a directory")?;
    dir.agents.retain(|a| matches(a, skills, idle));
    if json {
        println!("{}", serde_json::to_string(&dir)?);
        return Ok(());
    }
    if dir.agents.is_empty() {
        println!("no agent has {}", wanted(skills, idle));
        return Ok(());
    }
    let nodes = dir.agents.iter().any(|a| !a.node.is_empty());
    println!(
        "{}{:<20} {:<16} {:<16} {:<9} {:>3}  SKILLS",
        node_column(nodes, "NODE"),
        "NAME",
        "ROLE",
        "PARENT",
        "STATE",
        "CAP"
    );
    for a in &dir.agents {
        let parent = a.parent.as_deref().unwrap_or("-");
        println!(
            "{}{:<20} {:<16} {:<16} {:<9} {:>3}  {}",
            node_column(nodes, &a.node),
            a.name,
            a.role,
            parent,
            a.state,
            a.capacity,
            a.skills.join(",")
        );
    }
    Ok(())
}

/// The NODE column, shown when the hub is one of a cluster.
fn node_column(shown: bool, node: &str) -> String {
    match shown {
        true => format!("{node:<16} "),
        false => String::new(),
    }
}

/// Whether `a` has every skill asked for (and is idle, if asked).
fn matches(a: &AgentEntry, skills: &[String], idle: bool) -> bool {
    skills.iter().all(|s| a.skills.contains(s)) && (!idle || a.state == "idle")
}

/// What was asked for, in words.
fn wanted(skills: &[String], idle: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !skills.is_empty() {
        parts.push(format!("the skills {}", skills.join(", ")));
    }
    if idle {
        parts.push("an idle screen".to_string());
    }
    if parts.is_empty() {
        "a usable definition".to_string()
    } else {
        parts.join(" and ")
    }
}

/// `torch explain NAME`: one agent's state and what decided it.
pub fn explain(name: &torch_core::AgentName) -> Result<()> {
    let json = crate::hub_call(async |h| h.status().await)?;
    let status: FleetStatus = parse(&json, "a status")?;
    let a = status
        .agents
        .iter()
        .find(|a| a.name == name.as_str())
        .with_context(|| format!("no agent {name} (see `torch list`)"))?;
    let place = match &a.parent {
        Some(p) => format!("{} under {p}", a.role),
        None => a.role.clone(),
    };
    println!(
        "agent {} ({place}, profile {}), unit {} {}/{}",
        a.name, a.profile, a.unit, a.active_state, a.sub_state
    );
    let Some(state) = &a.agent_state else {
        println!("state: unknown (its supervisor does not answer; see `torch logs {name}`)");
        return Ok(());
    };
    let screen = a.screen_state.as_deref().unwrap_or("?");
    println!(
        "state: {state}, decided by {}; its screen alone reads {screen}",
        a.signal
    );
    if a.waiting_secs > 0 {
        println!(
            "waiting for {} s{}",
            a.waiting_secs,
            match a.question.as_str() {
                "" => String::new(),
                q => format!(": {q}"),
            }
        );
    }
    if let Some(t) = a.tokens {
        println!(
            "tokens: {} in, {} out, {} read from cache, {} written to cache",
            t.input, t.output, t.cache_read, t.cache_write
        );
    }
    if let Some(c) = a.cost_microusd {
        println!(
            "cost: ${:.4} this session, as its CLI computes it",
            c as f64 / 1e6
        );
    }
    println!(
        "messages: {} queued, {} delivered, {} failed",
        a.queued, a.delivered, a.failed
    );
    Ok(())
}

/// Prints `Status()` as the tree orchestrator > project managers > engineers.
pub fn print_status(json: &str) -> Result<()> {
    let status: FleetStatus = parse(json, "a status")?;
    let nodes = status.agents.iter().any(|a| !a.node.is_empty());
    println!(
        "{}{:<30} {:<16} {:<10} {:<10} {:>6} {:>9} {:>6}  LAST OUTPUT",
        node_column(nodes, "NODE"),
        "AGENT",
        "ROLE",
        "UNIT",
        "AGENT",
        "QUEUED",
        "DELIVERED",
        "FAILED"
    );
    walk(&status.agents, None, 0, nodes);
    Ok(())
}

fn walk(agents: &[AgentStatus], parent: Option<&str>, depth: usize, nodes: bool) {
    let defined = |p: &str| agents.iter().any(|a| a.name == p);
    for a in agents {
        let p = a.parent.as_deref();
        // Roots: no parent, or a parent that is not (or no longer) defined.
        let root = !p.is_some_and(defined);
        if (parent.is_none() && root) || (parent.is_some() && p == parent) {
            let idle = a.idle_secs.map_or("-".to_string(), |n| format!("{n}s ago"));
            let state = match (a.agent_state.as_deref(), a.waiting_secs) {
                (Some(s), 0) => s.to_string(),
                (Some(s), w) => format!("{s} {}m", w / 60),
                (None, _) => "-".to_string(),
            };
            println!(
                "{}{:<30} {:<16} {:<10} {:<10} {:>6} {:>9} {:>6}  {idle}",
                node_column(nodes, &a.node),
                format!("{}{}", "  ".repeat(depth), a.name),
                a.role,
                a.active_state,
                state,
                a.queued,
                a.delivered,
                a.failed
            );
            if !a.question.is_empty() {
                println!("{}  asks: {}", "  ".repeat(depth), a.question);
            }
            if let Some(e) = &a.definition_error {
                println!("{}  broken definition: {e}", "  ".repeat(depth));
            }
            if !a.tasks.is_empty() {
                let ids: Vec<String> = a
                    .tasks
                    .iter()
                    .map(|i| match a.stalled_tasks.contains(i) {
                        true => format!("#{i} (stalled)"),
                        false => format!("#{i}"),
                    })
                    .collect();
                println!("{}  tasks: {}", "  ".repeat(depth), ids.join(", "));
            }
            walk(agents, Some(&a.name), depth + 1, nodes);
        }
    }
}

/// Unix milliseconds as local `YYYY-MM-DD HH:MM:SS ZONE`, the zone being
/// `TZ` or /etc/localtime as for `date`, or `-`. Computed here, not by
/// running `date` for each time shown.
pub fn local_time(ms: i64) -> String {
    time_in(ms, &jiff::tz::TimeZone::system())
}

fn time_in(ms: i64, zone: &jiff::tz::TimeZone) -> String {
    if ms <= 0 {
        return "-".into();
    }
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned_datetime(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => format!("@{}", ms / 1000),
    }
}

/// How a listed schedule fires, as `torch schedule` spells it (`every
/// 30m`): the hub's `when`, or for an older hub without it, kind and spec.
fn schedule_when(s: &Schedule) -> String {
    if !s.when.is_empty() {
        return s.when.clone();
    }
    let unit = if matches!(s.kind.as_str(), "in" | "every") {
        "s"
    } else {
        ""
    };
    format!("{} {}{unit}", s.kind, s.spec)
}

/// Prints a schedule list as a table; NEXT in local time.
pub fn print_schedules(json: &str) -> Result<()> {
    let list: Vec<Schedule> = parse(json, "a schedule list")?;
    let whens: Vec<String> = list.iter().map(schedule_when).collect();
    let width = whens
        .iter()
        .map(|w| w.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    println!(
        "{:>4} {:<16} {:<width$} {:<26} {:>5}  NOTE",
        "ID", "AGENT", "WHEN", "NEXT", "FIRED"
    );
    for (row, when) in list.iter().zip(whens) {
        let next = local_time(row.next_ms.unwrap_or(0));
        let note: String = row.note.replace('\n', "⏎").chars().take(50).collect();
        println!(
            "{:>4} {:<16} {:<width$} {:<26} {:>5}  {note}",
            row.id, row.agent, when, next, row.fired
        );
    }
    Ok(())
}

/// Prints a message list as a table.
pub fn print_messages(json: &str) -> Result<()> {
    let list: Vec<Message> = parse(json, "a message list")?;
    println!(
        "{:>6} {:<16} {:<16} {:<10} {:>3}  TEXT",
        "ID", "FROM", "TO", "STATE", "TRY"
    );
    for m in list {
        let body: String = m.body.replace('\n', "⏎");
        let short: String = body.chars().take(60).collect();
        let more = if body.chars().count() > 60 { "…" } else { "" };
        println!(
            "{:>6} {:<16} {:<16} {:<10} {:>3}  {short}{more}",
            m.id, m.sender, m.recipient, m.state, m.attempts
        );
        if let Some(r) = m.reason.as_deref().filter(|_| m.state != "delivered") {
            println!("{:>6} reason: {r}", "");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_process() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(time_in(1_764_091_449_250, &utc), "2025-11-25 17:24:09 UTC");
        assert_eq!(time_in(0, &utc), "-");
    }

    #[test]
    fn schedules_are_shown_as_the_hub_words_them() {
        let row: Schedule =
            serde_json::from_str(r#"{"kind": "every", "spec": "1800", "when": "every 30m"}"#)
                .unwrap();
        assert_eq!(schedule_when(&row), "every 30m");
        let old: Schedule = serde_json::from_str(r#"{"kind": "every", "spec": "1800"}"#).unwrap();
        assert_eq!(schedule_when(&old), "every 1800s");
    }
}

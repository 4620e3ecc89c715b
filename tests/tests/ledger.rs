//! The work ledger on the real sandbox: agents declare skills and capacity,
//! and find each other by skill from their panes (`torch agents`).

use std::time::Duration;

use anyhow::{ensure, Result};
use torch_api::Directory;
use torch_tests::fleet::{boot_hub, record_path, TEST_AGENT};
use torch_tests::{wait_until, Sandbox};

/// Spawns an echo agent with `skills` (and `capacity`, when given).
fn spawn_skilled(
    sb: &Sandbox,
    name: &str,
    role: &str,
    parent: &str,
    skills: &[&str],
    capacity: Option<u32>,
) -> Result<(bool, String)> {
    let record = record_path(name);
    let mut args = vec![
        "spawn",
        name,
        "--role",
        role,
        "--parent",
        parent,
        "--workdir",
        "/srv/work",
    ];
    for s in skills {
        args.extend(["--skill", s]);
    }
    let cap = capacity.map(|c| c.to_string());
    if let Some(c) = &cap {
        args.extend(["--capacity", c]);
    }
    args.extend(["--", TEST_AGENT, "echo", "--record", &record]);
    sb.torch_status(&args)
}

/// The names in a `torch agents --json` answer run as `agent` from its unit.
fn directory(sb: &Sandbox, agent: &str, filter: &[&str]) -> Result<Vec<String>> {
    let mut args = vec!["agents", "--json"];
    args.extend_from_slice(filter);
    let (ok, out) = sb.torch_in_unit(agent, &args)?;
    ensure!(ok, "torch agents {filter:?} as {agent}: {out}");
    let dir: Directory = serde_json::from_str(&out)?;
    Ok(dir.agents.into_iter().map(|a| a.name).collect())
}

#[test]
fn agents_declare_skills_and_find_each_other_by_them() -> Result<()> {
    let sb = boot_hub("skills", "")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm1", "project-manager", Some("boss"))?;
    sb.spawn_echo("pm2", "project-manager", Some("boss"))?;
    let (ok, out) = spawn_skilled(&sb, "dev1", "engineer", "pm1", &["rust", "review"], Some(2))?;
    ensure!(ok, "{out}");
    let (ok, out) = spawn_skilled(&sb, "dev2", "engineer", "pm2", &["frontend", "rust"], None)?;
    ensure!(ok, "{out}");

    // Written into the definitions, shown in the status.
    let def = String::from_utf8(sb.read_file("/var/lib/torch/agents/dev1.toml")?)?;
    ensure!(
        def.contains("skills = [\"rust\", \"review\"]") && def.contains("capacity = 2"),
        "{def}"
    );
    let status = sb.torch(&["status", "--json"])?;
    ensure!(
        status.contains("\"skills\":[\"frontend\",\"rust\"]"),
        "{status}"
    );

    // From its pane, an engineer sees the whole fleet here (not only its
    // subtree, as in `status`), and filters by skill.
    let all = directory(&sb, "dev2", &[])?;
    ensure!(all == ["boss", "dev1", "dev2", "pm1", "pm2"], "{all:?}");
    ensure!(directory(&sb, "dev2", &["--skill", "review"])? == ["dev1"]);
    ensure!(directory(&sb, "dev2", &["--skill", "rust"])? == ["dev1", "dev2"]);
    ensure!(directory(&sb, "dev2", &["--skill", "rust", "--skill", "frontend"])? == ["dev2"]);
    ensure!(directory(&sb, "dev2", &["--skill", "go"])?.is_empty());
    wait_until("dev1 idle", Duration::from_secs(20), || {
        Ok(directory(&sb, "dev2", &["--skill", "review", "--idle"])? == ["dev1"])
    })?;
    sb.torch(&["stop", "dev1"])?;
    ensure!(directory(&sb, "dev2", &["--skill", "review", "--idle"])?.is_empty());
    let table = sb.torch(&["agents", "--skill", "rust"])?;
    ensure!(
        table.contains("dev2") && table.contains("frontend,rust"),
        "{table}"
    );

    // Bad skills and capacities are refused with the rule, nothing written.
    let (ok, out) = spawn_skilled(&sb, "dev3", "engineer", "pm1", &["Rust"], None)?;
    ensure!(!ok && out.contains("lowercase"), "{out}");
    let (ok, out) = spawn_skilled(&sb, "dev3", "engineer", "pm1", &["go"], Some(1000))?;
    ensure!(!ok && out.contains("capacity"), "{out}");
    ensure!(!sb
        .exec(&["test", "-e", "/var/lib/torch/agents/dev3.toml"])?
        .status
        .success());
    let (ok, out) = sb.torch_status(&["agents", "--skill", "a b"])?;
    ensure!(!ok && out.contains("skill"), "{out}");
    Ok(())
}

/// Runs `torch task ARGS` as `agent` from its unit; fails unless it worked.
fn task_as(sb: &Sandbox, agent: &str, args: &[&str]) -> Result<String> {
    let mut v = vec!["task"];
    v.extend_from_slice(args);
    let (ok, out) = sb.torch_in_unit(agent, &v)?;
    ensure!(ok, "{agent}: torch {}: {out}", v.join(" "));
    Ok(out)
}

/// Runs `torch task ARGS` as `agent` and checks it was refused with `why`.
fn task_refused(sb: &Sandbox, agent: &str, args: &[&str], why: &str) -> Result<()> {
    let mut v = vec!["task"];
    v.extend_from_slice(args);
    let (ok, out) = sb.torch_in_unit(agent, &v)?;
    ensure!(
        !ok && out.contains(why),
        "{agent}: torch {}: {out}",
        v.join(" ")
    );
    Ok(())
}

/// Waits until agent `name` got a message containing every one of `parts`.
fn told(sb: &Sandbox, name: &str, parts: &[&str]) -> Result<()> {
    wait_until(
        &format!("{name} told {parts:?}"),
        Duration::from_secs(20),
        || {
            Ok(sb
                .records(name)?
                .iter()
                .any(|r| parts.iter().all(|p| r.contains(p))))
        },
    )
}

#[test]
fn tasks_are_opened_claimed_reported_and_kept_with_their_history() -> Result<()> {
    // Claims alone: the router would give the tasks away first.
    let sb = boot_hub("tasks", "[ledger]\nroute = false\n")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm1", "project-manager", Some("boss"))?;
    sb.spawn_echo("pm2", "project-manager", Some("boss"))?;
    sb.spawn_echo("evil", "engineer", Some("pm2"))?;
    ensure!(spawn_skilled(&sb, "dev1", "engineer", "pm1", &["rust", "review"], None)?.0);
    ensure!(spawn_skilled(&sb, "dev2", "engineer", "pm1", &["frontend"], None)?.0);

    let out = task_as(
        &sb,
        "pm1",
        &["add", "--title", "Fix the parser", "--skill", "rust"],
    )?;
    ensure!(out.trim() == "task #1", "{out}");
    task_as(
        &sb,
        "pm1",
        &[
            "add", "--title", "Ship it", "--skill", "rust", "--after", "1",
        ],
    )?;

    // Claiming needs the skills, the dependencies done, and room.
    task_refused(&sb, "dev2", &["claim", "1"], "lacks the skills rust")?;
    task_refused(&sb, "dev1", &["claim", "2"], "waits for #1")?;
    task_as(&sb, "dev1", &["claim", "1"])?;
    task_refused(&sb, "dev2", &["claim", "1"], "is assigned")?;
    task_as(&sb, "dev1", &["start", "1"])?;
    let current = task_as(&sb, "dev1", &["current"])?;
    ensure!(
        current.contains("#1") && current.contains("working"),
        "{current}"
    );
    task_refused(
        &sb,
        "evil",
        &["done", "1", "--summary", "mine now"],
        "only the holder",
    )?;

    // Finishing tells whoever gave it, and frees the next one.
    task_as(&sb, "dev1", &["done", "1", "--summary", "parser fixed"])?;
    told(
        &sb,
        "pm1",
        &[
            "Task #1 done by dev1: Fix the parser",
            "Summary: parser fixed",
        ],
    )?;
    task_as(&sb, "dev1", &["claim", "2"])?;
    let show = task_as(&sb, "pm1", &["show", "1", "--json"])?;
    let t: torch_api::Task = serde_json::from_str(&show)?;
    let states: Vec<&str> = t.history.iter().map(|c| c.state.as_str()).collect();
    ensure!(
        states == ["open", "assigned", "working", "done"],
        "{states:?}"
    );
    ensure!(t.history[3].note == "parser fixed" && t.history[3].actor == "dev1");

    // Given at once: the holder is told what to do and how to report.
    let out = task_as(
        &sb,
        "pm1",
        &[
            "add",
            "--title",
            "Style the cart",
            "--skill",
            "frontend",
            "--assign",
            "dev2",
        ],
    )?;
    ensure!(out.trim() == "task #3", "{out}");
    told(
        &sb,
        "dev2",
        &[
            "Task #3 for you, from pm1: Style the cart",
            "torch task done 3",
        ],
    )?;
    task_refused(
        &sb,
        "pm1",
        &["add", "--title", "x", "--assign", "evil"],
        "only to itself and the agents below it",
    )?;
    task_refused(
        &sb,
        "pm1",
        &["add", "--title", "x", "--skill", "go", "--assign", "dev1"],
        "lacks the skills go",
    )?;
    task_as(&sb, "dev2", &["block", "3", "--reason", "need the API"])?;
    told(
        &sb,
        "pm1",
        &[
            "Task #3 blocked (dev2): Style the cart",
            "Reason: need the API",
        ],
    )?;
    task_refused(&sb, "evil", &["cancel", "3"], "may cancel it")?;
    task_as(&sb, "pm1", &["cancel", "3"])?;
    told(&sb, "dev2", &["Task #3 cancelled by pm1"])?;

    // Another branch sees only open tasks.
    sb.torch(&[
        "task",
        "add",
        "--title",
        "Anyone with rust",
        "--skill",
        "rust",
    ])?;
    let seen: Vec<torch_api::Task> =
        serde_json::from_str(&task_as(&sb, "evil", &["list", "--json"])?)?;
    let ids: Vec<i64> = seen.iter().map(|t| t.id).collect();
    ensure!(ids == [4], "evil sees {ids:?}");
    task_refused(&sb, "evil", &["show", "1"], "may see open tasks")?;
    let all = sb.torch(&["task", "list"])?;
    ensure!(all.lines().count() == 5, "{all}");

    // Bad input is refused with the rule, nothing stored.
    let (ok, out) = sb.torch_status(&["task", "add", "--title", " "])?;
    ensure!(!ok && out.contains("title"), "{out}");
    let (ok, out) = sb.torch_status(&["task", "add", "--title", "x", "--priority", "5000"])?;
    ensure!(!ok && out.contains("priority"), "{out}");
    let (ok, out) = sb.torch_status(&["task", "add", "--title", "x", "--after", "99"])?;
    ensure!(!ok && out.contains("#99"), "{out}");
    let (ok, out) = sb.torch_status(&["task", "done", "77", "--summary", "s"])?;
    ensure!(!ok && out.contains("no task #77"), "{out}");
    let audit = sb.journal(&["TORCH_AUDIT=1", "-o", "cat"])?;
    ensure!(
        audit.contains("agent dev1 (uid") && audit.contains("called TaskAct: task #1: done"),
        "{audit}"
    );
    Ok(())
}

/// A worker: a shell loop that finishes every task it is given, at once,
/// with `torch task done` from its pane, and shows a prompt when it waits.
fn spawn_worker(sb: &Sandbox, name: &str, skills: &[&str]) -> Result<()> {
    let script = r#"while printf 'worker> ' && IFS= read -r line; do
  case "$line" in
    'Task #'*' for you'*) id=${line#Task #}; id=${id%% *}; torch task done "$id" --summary "done by $TORCH_AGENT" >/dev/null ;;
  esac
done"#;
    let mut args = vec![
        "spawn",
        name,
        "--role",
        "engineer",
        "--parent",
        "pm1",
        "--workdir",
        "/srv/work",
        "--profile",
        "shell",
    ];
    for s in skills {
        args.extend(["--skill", s]);
    }
    args.extend(["--", "bash", "--norc", "-c", script]);
    sb.torch(&args).map(drop)
}

/// When task `t` entered `state`, if it did.
fn entered(t: &torch_api::Task, state: &str) -> Option<i64> {
    t.history.iter().find(|c| c.state == state).map(|c| c.at_ms)
}

#[test]
fn the_hub_routes_tasks_by_skill_capacity_and_dependencies() -> Result<()> {
    let sb = boot_hub("route", "")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm1", "project-manager", Some("boss"))?;
    sb.spawn_echo("pm2", "project-manager", Some("boss"))?;
    let skills_of = |w: &str| -> &[&str] {
        match w {
            "w1" | "w4" => &["rust"],
            "w2" => &["rust", "review"],
            "w3" => &["frontend"],
            "w5" => &["frontend", "review"],
            _ => &["go"],
        }
    };
    for w in ["w1", "w2", "w3", "w4", "w5", "w6"] {
        spawn_worker(&sb, w, skills_of(w))?;
    }

    // Every change is signalled (TaskChanged), as it happens.
    sb.run(&[
        "systemd-run",
        "--unit",
        "task-signals",
        "-p",
        "StandardOutput=file:/run/task-signals.log",
        "dbus-monitor",
        "--system",
        "type='signal',interface='org.torch.Manager1',member='TaskChanged'",
    ])?;
    // Another branch's task: no worker below pm2, so it stays open.
    task_as(
        &sb,
        "pm2",
        &["add", "--title", "pm2's own", "--skill", "rust"],
    )?;
    let mut ids = Vec::new();
    let kinds = [
        &["rust"][..],
        &["rust", "review"],
        &["frontend"],
        &[],
        &["go"],
        &["frontend", "review"],
    ];
    for (i, skills) in kinds.iter().cycle().take(50).enumerate() {
        let title = format!("job {i}");
        let mut args = vec!["task", "add", "--title", title.as_str()];
        for s in *skills {
            args.extend(["--skill", s]);
        }
        let after = ids.first().map(|f: &i64| f.to_string());
        if i == 49 {
            args.extend(["--after", after.as_deref().unwrap_or("")]);
        }
        let out = sb.torch(&args)?;
        ids.push(out.trim().trim_start_matches("task #").parse::<i64>()?);
    }
    wait_until("every job done", Duration::from_secs(90), || {
        let tasks: Vec<torch_api::Task> =
            serde_json::from_str(&sb.torch(&["task", "list", "--state", "done", "--json"])?)?;
        Ok(tasks.len() == 50)
    })?;

    let mut held: Vec<(String, i64, i64)> = Vec::new();
    for id in &ids {
        let t: torch_api::Task =
            serde_json::from_str(&sb.torch(&["task", "show", &id.to_string(), "--json"])?)?;
        let holder = t.owner.clone().unwrap_or_default();
        ensure!(
            t.skills
                .iter()
                .all(|s| skills_of(&holder).contains(&s.as_str())),
            "#{id} went to {holder}: {t:?}"
        );
        let dones = t.history.iter().filter(|c| c.state == "done").count();
        ensure!(
            dones == 1 && t.history[1].actor == "hub",
            "#{id}: {:?}",
            t.history
        );
        let (from, to) = (
            entered(&t, "assigned").unwrap_or(0),
            entered(&t, "done").unwrap_or(0),
        );
        held.push((holder, from, to));
    }
    // Capacity 1: no worker held two at once.
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            ensure!(
                a.0 != b.0 || a.2 <= b.1 || b.2 <= a.1,
                "{} held two at once: {a:?} {b:?}",
                a.0
            );
        }
    }
    // The last waited for the first.
    ensure!(
        held[49].1 >= held[0].2,
        "#{} was given before #{} was done",
        ids[49],
        ids[0]
    );
    // Each job's done was signalled once, by the worker that did it.
    wait_until("every done signalled", Duration::from_secs(10), || {
        Ok(signalled(&sb, "done")?.len() == 50)
    })?;
    let done = signalled(&sb, "done")?;
    for (id, (holder, ..)) in ids.iter().zip(&held) {
        ensure!(
            done.iter().filter(|(i, _)| i == id).count() == 1
                && done.contains(&(*id, holder.clone())),
            "#{id} done by {holder}: signals {done:?}"
        );
    }
    // Reports reach the holders' parent; pm2's task is still open.
    told(&sb, "pm1", &["done by w2"])?;
    let open = sb.torch(&["task", "list", "--state", "open"])?;
    ensure!(open.contains("pm2's own"), "{open}");
    Ok(())
}

/// The `TaskChanged` signals into `state` that dbus-monitor saw: (task,
/// actor).
fn signalled(sb: &Sandbox, state: &str) -> Result<Vec<(i64, String)>> {
    let log = String::from_utf8_lossy(&sb.read_file("/run/task-signals.log")?).into_owned();
    let lines: Vec<&str> = log.lines().collect();
    let arg = |l: Option<&&str>| {
        l.map(|l| {
            l.trim()
                .split_once(' ')
                .map_or("", |(_, v)| v)
                .trim_matches('"')
                .to_string()
        })
        .unwrap_or_default()
    };
    Ok(lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("member=TaskChanged"))
        .filter(|(i, _)| arg(lines.get(i + 2)) == state)
        .filter_map(|(i, _)| Some((arg(lines.get(i + 1)).parse().ok()?, arg(lines.get(i + 3)))))
        .collect())
}

/// When messages to `agent` from `sender` were stored, Unix milliseconds.
fn sent_at(sb: &Sandbox, agent: &str, sender: &str) -> Result<Vec<i64>> {
    Ok(sb
        .all_messages(agent)?
        .iter()
        .filter(|m| m["sender"] == sender && m["recipient"] == agent)
        .filter_map(|m| m["created_ms"].as_i64())
        .collect())
}

#[test]
fn stalled_tasks_are_nudged_escalated_and_taken_back() -> Result<()> {
    let sb = boot_hub("stall", "[ledger]\nstall_after = \"3s\"\nnudges = 2\n")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm1", "project-manager", Some("boss"))?;
    // An echo agent takes its task and never reports.
    ensure!(spawn_skilled(&sb, "dev1", "engineer", "pm1", &["rust"], None)?.0);
    sb.torch(&[
        "task",
        "add",
        "--title",
        "Never reported",
        "--skill",
        "rust",
    ])?;
    told(&sb, "dev1", &["Task #1 for you"])?;
    wait_until("the stall told to pm1", Duration::from_secs(30), || {
        Ok(!sent_at(&sb, "pm1", "task-1")?.is_empty())
    })?;
    let t: torch_api::Task = serde_json::from_str(&sb.torch(&["task", "show", "1", "--json"])?)?;
    let assigned = entered(&t, "assigned").unwrap_or(0);
    let nudged = sent_at(&sb, "dev1", "task-1")?;
    let stalled = sent_at(&sb, "pm1", "task-1")?;
    ensure!(
        nudged.len() == 2 && stalled.len() == 1 && t.stalled,
        "{nudged:?} {stalled:?} {t:?}"
    );
    // Each step stall_after (3 s) after the one before, within the
    // router's one-second rounds (and a second of slack for a busy machine).
    let steps = [assigned, nudged[0], nudged[1], stalled[0]];
    for w in steps.windows(2) {
        let gap = w[1] - w[0];
        ensure!(
            (3000..=5000).contains(&gap),
            "a step took {gap} ms: {steps:?}"
        );
    }
    told(
        &sb,
        "dev1",
        &["You hold task #1 (Never reported) and have been idle for"],
    )?;
    told(
        &sb,
        "pm1",
        &["Task #1 (Never reported), held by dev1, has stalled"],
    )?;
    let alerts = sb.journal(&["TORCH_ALERT=1", "-o", "cat"])?;
    ensure!(alerts.contains("task #1 stalled: dev1"), "{alerts}");
    ensure!(sb.torch(&["task", "list"])?.contains("(stalled)"));
    let status = sb.torch(&["status"])?;
    ensure!(status.contains("tasks: #1 (stalled)"), "{status}");
    let st: torch_api::FleetStatus = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    let dev1 = st.agents.iter().find(|a| a.name == "dev1");
    ensure!(
        dev1.is_some_and(|a| a.tasks == [1] && a.stalled_tasks == [1]),
        "{dev1:?}"
    );

    // Retired, its holder's task is open again, and goes to the next one.
    sb.torch(&["retire", "dev1"])?;
    let t: torch_api::Task = serde_json::from_str(&sb.torch(&["task", "show", "1", "--json"])?)?;
    ensure!(t.state == "open" && t.owner.is_none(), "{t:?}");
    ensure!(
        t.history
            .last()
            .is_some_and(|c| c.note == "its holder was retired"),
        "{t:?}"
    );
    ensure!(spawn_skilled(&sb, "dev2", "engineer", "pm1", &["rust"], None)?.0);
    told(&sb, "dev2", &["Task #1 for you"])?;

    // A holder that is down for stall_after loses its task the same way.
    sb.torch(&["stop", "dev2"])?;
    wait_until("the task back to open", Duration::from_secs(15), || {
        let t: torch_api::Task =
            serde_json::from_str(&sb.torch(&["task", "show", "1", "--json"])?)?;
        Ok(t.state == "open"
            && t.history
                .last()
                .is_some_and(|c| c.note == "its holder is not running"))
    })?;
    Ok(())
}

#[test]
fn handoffs_and_reviews_move_tasks_between_agents() -> Result<()> {
    let sb = boot_hub("handoff", "[ledger]\nroute = false\n")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm1", "project-manager", Some("boss"))?;
    sb.spawn_echo("pm2", "project-manager", Some("boss"))?;
    sb.spawn_echo("evil", "engineer", Some("pm2"))?;
    for (name, skills) in [
        ("dev1", &["rust"][..]),
        ("dev2", &["rust"]),
        ("rev1", &["review"]),
    ] {
        ensure!(spawn_skilled(&sb, name, "engineer", "pm1", skills, None)?.0);
    }
    task_as(
        &sb,
        "pm1",
        &[
            "add",
            "--title",
            "Fix the parser",
            "--skill",
            "rust",
            "--assign",
            "dev1",
        ],
    )?;

    // Handed over to a peer with the skills: it gets the task and the note.
    task_as(
        &sb,
        "dev1",
        &["handoff", "1", "--to", "dev2", "--note", "I am out of time"],
    )?;
    told(
        &sb,
        "dev2",
        &[
            "Task #1 for you, from pm1: Fix the parser",
            "Handed over by dev1: I am out of time",
        ],
    )?;
    task_refused(
        &sb,
        "dev2",
        &["handoff", "1", "--to", "evil", "--note", "x"],
        "is not below it",
    )?;
    task_refused(
        &sb,
        "dev2",
        &["handoff", "1", "--to", "rev1", "--note", "x"],
        "lacks the skills rust",
    )?;
    task_refused(
        &sb,
        "dev1",
        &["handoff", "1", "--to", "dev1", "--note", "mine again"],
        "only the holder",
    )?;

    // Review: rejected once as rework, then approved by the reviewer.
    task_as(
        &sb,
        "dev2",
        &[
            "review",
            "1",
            "--reviewer",
            "rev1",
            "--note",
            "check the tests",
        ],
    )?;
    told(
        &sb,
        "rev1",
        &[
            "Task #1 (Fix the parser), by dev2, is for you to review.",
            "check the tests",
            "torch task reject 1",
        ],
    )?;
    task_refused(
        &sb,
        "dev2",
        &["done", "1", "--summary", "self-approved"],
        "only its reviewer",
    )?;
    task_refused(
        &sb,
        "evil",
        &["reject", "1", "--reason", "no"],
        "only the reviewer",
    )?;
    task_as(
        &sb,
        "rev1",
        &["reject", "1", "--reason", "add a test for empty input"],
    )?;
    told(
        &sb,
        "dev2",
        &["Task #1 (Fix the parser) came back from review by rev1: add a test for empty input"],
    )?;
    task_as(&sb, "dev2", &["review", "1", "--reviewer", "rev1"])?;
    task_as(&sb, "rev1", &["done", "1", "--summary", "tests pass"])?;
    told(
        &sb,
        "pm1",
        &[
            "Task #1 done by rev1: Fix the parser",
            "Summary: tests pass",
        ],
    )?;
    let t: torch_api::Task = serde_json::from_str(&task_as(&sb, "pm1", &["show", "1", "--json"])?)?;
    let states: Vec<&str> = t.history.iter().map(|c| c.state.as_str()).collect();
    ensure!(
        states == ["open", "assigned", "assigned", "review", "working", "review", "done"],
        "{states:?}"
    );
    ensure!(
        t.owner.as_deref() == Some("dev2") && t.reviewer.as_deref() == Some("rev1"),
        "{t:?}"
    );

    // Back to the ledger, asking for one more skill.
    task_as(
        &sb,
        "pm1",
        &[
            "add",
            "--title",
            "Cart page",
            "--skill",
            "rust",
            "--assign",
            "dev1",
        ],
    )?;
    task_as(
        &sb,
        "dev1",
        &[
            "handoff",
            "2",
            "--skill",
            "frontend",
            "--note",
            "needs UI work",
        ],
    )?;
    let t: torch_api::Task = serde_json::from_str(&task_as(&sb, "pm1", &["show", "2", "--json"])?)?;
    ensure!(
        t.state == "open" && t.owner.is_none() && t.skills == ["frontend", "rust"],
        "{t:?}"
    );
    task_refused(
        &sb,
        "dev1",
        &["reject", "2", "--reason", "x"],
        "applies to a task that is review",
    )?;
    Ok(())
}

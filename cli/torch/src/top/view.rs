//! Drawing `torch top`: the tree, the selected agent's screen, inbox and
//! journal when asked, and a bottom line of keys or the last note. Fits 80
//! columns by 24 rows.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};
use ratatui::Frame;

use super::model::{Mode, Model, Row};

const KEYS: &str = "↑↓ select  ⏎ details  s send  y/n answer  R restart  a attach  q quit";

/// The colour of a state.
fn colour(state: &str) -> Color {
    match state {
        "idle" => Color::Green,
        "working" => Color::Yellow,
        "asking" => Color::Magenta,
        "trouble" => Color::Red,
        "limited" => Color::Blue,
        _ => Color::DarkGray,
    }
}

pub fn draw(f: &mut Frame, m: &Model) {
    let constraints = if m.detail {
        vec![
            Constraint::Min(5),
            Constraint::Percentage(60),
            Constraint::Length(1),
        ]
    } else {
        vec![Constraint::Min(3), Constraint::Length(1)]
    };
    let parts = Layout::vertical(constraints).split(f.area());
    draw_tree(f, parts[0], m);
    if m.detail {
        draw_detail(f, parts[1], m);
    }
    draw_bottom(f, parts[parts.len() - 1], m);
}

fn line(r: &Row, m: &Model) -> Line<'static> {
    let quiet = r
        .quiet_secs
        .map(|s| s + m.read_at.elapsed().as_secs())
        .map_or(String::new(), |s| format!("{s}s"));
    let tasks = if r.tasks.is_empty() {
        String::new()
    } else {
        let ids: Vec<String> = r.tasks.iter().map(|t| format!("#{t}")).collect();
        format!(" tasks {}", ids.join(","))
    };
    Line::from(vec![
        Span::raw(format!("{}{:<14}", "  ".repeat(r.depth), r.name)),
        Span::styled(
            format!(" {:<8}", r.state),
            Style::new().fg(colour(&r.state)),
        ),
        Span::raw(format!(" q{:<3} {:>6}{tasks} ", r.queued, quiet)),
        Span::styled(r.why.clone(), Style::new().fg(Color::DarkGray)),
    ])
}

fn draw_tree(f: &mut Frame, area: Rect, m: &Model) {
    let items: Vec<ListItem> = m.rows.iter().map(|r| ListItem::new(line(r, m))).collect();
    let title = format!(" torch top: {} agents ", m.rows.len());
    let list = List::new(items)
        .block(Block::new().borders(Borders::ALL).title(title))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(m.selected));
    f.render_stateful_widget(list, area, &mut state);
}

fn draw_detail(f: &mut Frame, area: Rect, m: &Model) {
    let cols =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).split(area);
    let name = m.selected_name().unwrap_or_default();
    // The bottom of the screen: where a prompt and the latest output are.
    let rows = cols[0].height.saturating_sub(2) as usize;
    let screen: Vec<&str> = m.screen.lines().collect();
    let tail = screen[screen.len().saturating_sub(rows)..].join("\n");
    let screen = Paragraph::new(tail).block(
        Block::new()
            .borders(Borders::ALL)
            .title(format!(" {name}: screen ")),
    );
    f.render_widget(screen, cols[0]);
    let right =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).split(cols[1]);
    let inbox = Paragraph::new(m.inbox.join("\n"))
        .block(Block::new().borders(Borders::ALL).title(" inbox "));
    f.render_widget(inbox, right[0]);
    let journal = Paragraph::new(m.journal.join("\n"))
        .block(Block::new().borders(Borders::ALL).title(" journal "));
    f.render_widget(journal, right[1]);
}

fn draw_bottom(f: &mut Frame, area: Rect, m: &Model) {
    let text = match &m.mode {
        Mode::Typing(t) => format!(
            "message to {} (⏎ send, Esc cancel): {t}_",
            m.selected_name().unwrap_or_default()
        ),
        Mode::Browse if m.note.is_empty() => KEYS.to_string(),
        Mode::Browse => m.note.clone(),
    };
    f.render_widget(Paragraph::new(text), area);
}

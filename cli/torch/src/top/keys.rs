//! The keys of `torch top`, read on a thread of their own (the terminal's
//! reads block), and what each does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind};
use tokio::sync::mpsc;
use torch_api::ManagerProxy;
use torch_core::policy::OPERATOR;

use super::model::{Mode, Model};
use crate::hub;

/// Reads keys until the view ends; paused while another program (`torch
/// attach`) has the terminal.
pub struct Reader {
    paused: Arc<AtomicBool>,
}

impl Reader {
    pub fn start(tx: mpsc::UnboundedSender<KeyEvent>) -> Reader {
        let paused = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&paused);
        std::thread::spawn(move || loop {
            if flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            match event::poll(Duration::from_millis(100)) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => return,
            }
            match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                    if tx.send(k).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        });
        Reader { paused }
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
        // A poll under way ends within its 100 ms.
        std::thread::sleep(Duration::from_millis(150));
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }
}

/// What the view does after a key.
pub enum Next {
    Stay,
    Quit,
    /// Hands the terminal to `torch attach NAME`, then takes it back.
    Attach(String),
}

/// Acts on `key`.
pub async fn act(h: &ManagerProxy<'_>, m: &mut Model, key: KeyEvent) -> Next {
    if let Mode::Typing(text) = &mut m.mode {
        match key.code {
            KeyCode::Char(c) => text.push(c),
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Esc => m.mode = Mode::Browse,
            KeyCode::Enter => {
                let text = std::mem::take(text);
                m.mode = Mode::Browse;
                send(h, m, &text).await;
            }
            _ => {}
        }
        return Next::Stay;
    }
    m.note.clear();
    let Some(name) = m.selected_name().map(str::to_string) else {
        return quit_or_stay(key);
    };
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => m.up(),
        KeyCode::Down | KeyCode::Char('j') => m.down(),
        KeyCode::Enter => {
            m.detail = !m.detail;
            if m.detail {
                super::load_detail(h, m).await;
            }
        }
        KeyCode::Char('s') => m.mode = Mode::Typing(String::new()),
        KeyCode::Char(c @ ('y' | 'n')) => {
            let choice = if c == 'y' { "yes" } else { "no" };
            m.note = outcome(
                h.answer(&name, choice).await,
                &format!("answered {name}: {choice}"),
            );
        }
        KeyCode::Char('R') => {
            m.note = format!("restarting {name}...");
            m.note = outcome(h.restart(&name).await, &format!("restarted {name}"));
        }
        KeyCode::Char('a') => return Next::Attach(name),
        _ => return quit_or_stay(key),
    }
    Next::Stay
}

fn quit_or_stay(key: KeyEvent) -> Next {
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => Next::Quit,
        _ => Next::Stay,
    }
}

async fn send(h: &ManagerProxy<'_>, m: &mut Model, text: &str) {
    let Some(name) = m.selected_name().map(str::to_string) else {
        return;
    };
    if text.trim().is_empty() {
        m.note = "nothing sent: the message was empty".into();
        return;
    }
    m.note = match h.send(OPERATOR, &name, text).await {
        Ok(id) => format!("message #{id} to {name} stored; it is delivered when {name} is idle"),
        Err(e) => format!("not sent: {}", hub::explain(e)),
    };
}

fn outcome(r: zbus::Result<()>, done: &str) -> String {
    match r {
        Ok(()) => done.to_string(),
        Err(e) => hub::explain(e).to_string(),
    }
}

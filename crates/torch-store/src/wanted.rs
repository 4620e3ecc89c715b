//! Which agents should be running, so that a reboot brings them back.
//!
//! `torch spawn` and `torch start` add an agent, `torch stop` and `torch
//! retire` remove it; the hub starts the agents listed here at its first
//! start in each boot, which it tells by the boot stamp kept in `meta`.

use rusqlite::{params, OptionalExtension};

use crate::{Store, StoreError};

impl Store {
    /// Marks `agent` as one to bring back after a reboot, or not.
    pub fn set_wanted(&self, agent: &str, up: bool) -> Result<(), StoreError> {
        let agent = agent.to_string();
        self.write(move |c| {
            if up {
                c.execute(
                    "INSERT OR IGNORE INTO wanted (agent) VALUES (?1)",
                    params![agent],
                )?;
            } else {
                c.execute("DELETE FROM wanted WHERE agent = ?1", params![agent])?;
            }
            Ok(())
        })
    }

    /// The agents to bring back after a reboot, by name.
    pub fn wanted(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT agent FROM wanted ORDER BY agent")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// The boot stamp recorded by [`Store::set_boot_stamp`], if any.
    pub fn boot_stamp(&self) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row("SELECT value FROM meta WHERE key = 'boot'", [], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    /// Records that the fleet of the boot `stamp` has been brought back.
    pub fn set_boot_stamp(&self, stamp: &str) -> Result<(), StoreError> {
        let stamp = stamp.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('boot', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![stamp],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_agents_and_boot_stamp_survive_reopen() {
        let (s, dir) = crate::tests::temp_store("wanted");
        assert_eq!(s.boot_stamp().unwrap(), None);
        s.set_wanted("b", true).unwrap();
        s.set_wanted("a", true).unwrap();
        s.set_wanted("a", true).unwrap();
        s.set_wanted("c", true).unwrap();
        s.set_wanted("c", false).unwrap();
        s.set_boot_stamp("1").unwrap();
        s.set_boot_stamp("2").unwrap();
        drop(s);
        let s = Store::open(&dir.join("torch.db")).unwrap();
        assert_eq!(s.wanted().unwrap(), ["a", "b"]);
        assert_eq!(s.boot_stamp().unwrap().as_deref(), Some("2"));
        drop(s);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

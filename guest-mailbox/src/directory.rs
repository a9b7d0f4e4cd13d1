//! The address book, allow and block lists, preferences and filter
//! plugins: the small keyed collections around the mail.
//!
//! Each collection is a last-writer-wins map (`lww.rs`): adds are upserts
//! and removals leave stamped tombstones, so replicas applying the same
//! operations in any order agree. Tombstones are bounded per collection by
//! the collection's own limit, oldest dropped first.
//!
//! Addresses are compared case-insensitively (lower-cased keys), which is
//! what users expect even though RFC 5321 lets a local part be
//! case-sensitive; no real mail system relies on that.

use crate::error::{Result, check_size, invalid_argument, limit_reached, not_found};
use crate::limits::{
    ADDRESS_BYTES_MAX, CONTACT_NAME_BYTES_MAX, CONTACT_NOTE_BYTES_MAX, CONTACTS_MAX,
    PLUGIN_CONFIG_BYTES_MAX, PLUGINS_MAX, PREFERENCE_VALUE_BYTES_MAX, PREFERENCES_MAX,
    SENDER_PATTERNS_MAX,
};
use crate::lww::{LwwMap, Write};
use crate::names::{check_name, is_hash_hex};
use crate::state::{ContactRec, Mailbox, PluginRec, Stamp};
use crate::wit::{Contact, OpContext, PluginEntry, SenderList, SenderStatus};

/// The bare, lower-cased address in `"Bob" <bob@example.com>`,
/// `<bob@example.com>` or `bob@example.com`.
pub fn bare_address(s: &str) -> String {
    let inner = match (s.rfind('<'), s.rfind('>')) {
        (Some(open), Some(close)) if open < close => &s[open + 1..close],
        _ => s,
    };
    inner.trim().to_lowercase()
}

fn check_address(addr: &str) -> Result<()> {
    check_size("address", ADDRESS_BYTES_MAX, addr.len())?;
    let ok = match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !addr
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    };
    if !ok {
        return Err(invalid_argument(format!(
            "{addr:?} is not a bare address like user@example.com"
        )));
    }
    Ok(())
}

/// Normalises an allow/block pattern to `user@domain` or `@domain`, lower
/// case, so `example.com` and `@Example.COM` are the same entry.
fn sender_pattern(pattern: &str) -> Result<String> {
    check_size("sender pattern", ADDRESS_BYTES_MAX, pattern.len())?;
    let p = pattern.to_lowercase();
    if p.starts_with('@') || !p.contains('@') {
        let domain = p.strip_prefix('@').unwrap_or(&p);
        let bad = domain.is_empty()
            || domain.starts_with('.')
            || domain
                .chars()
                .any(|c| c == '@' || c == '<' || c == '>' || c.is_control() || c.is_whitespace());
        if bad {
            return Err(invalid_argument(format!(
                "{pattern:?} is not a domain like example.com"
            )));
        }
        return Ok(format!("@{domain}"));
    }
    check_address(&p)?;
    Ok(p)
}

impl Mailbox {
    /// Adds or replaces the contact (last writer wins, see `lww.rs`).
    pub fn add_contact(&mut self, ctx: &OpContext, c: Contact) -> Result<()> {
        check_address(&c.address)?;
        check_size("contact name", CONTACT_NAME_BYTES_MAX, c.name.len())?;
        check_size("contact note", CONTACT_NOTE_BYTES_MAX, c.note.len())?;
        let key = c.address.to_lowercase();
        let contacts = &mut self.state.contacts;
        check_room(
            "contacts",
            CONTACTS_MAX,
            contacts.len(),
            contacts.contains(&key),
        )?;
        let rec = ContactRec {
            name: c.name,
            address: c.address,
            note: c.note,
        };
        contacts.put(key, rec, Stamp::of(ctx));
        Ok(())
    }

    pub fn remove_contact(&mut self, ctx: &OpContext, address: &str) -> Result<()> {
        let key = bare_address(address);
        let write = self.state.contacts.remove(&key, Stamp::of(ctx));
        self.state.contacts.prune(CONTACTS_MAX);
        removed(write, "contact", &key)
    }

    /// Sorted by lower-cased address.
    pub fn list_contacts(&self) -> Vec<Contact> {
        self.state
            .contacts
            .iter()
            .map(|(_, c)| Contact {
                name: c.name.clone(),
                address: c.address.clone(),
                note: c.note.clone(),
            })
            .collect()
    }

    fn sender_list_mut(&mut self, which: SenderList) -> &mut LwwMap<()> {
        match which {
            SenderList::Allow => &mut self.state.allow,
            SenderList::Block => &mut self.state.block,
        }
    }

    /// Adds the pattern; adding a listed one refreshes its stamp.
    pub fn add_sender(&mut self, ctx: &OpContext, which: SenderList, pattern: &str) -> Result<()> {
        let p = sender_pattern(pattern)?;
        let list = self.sender_list_mut(which);
        check_room(
            "sender patterns",
            SENDER_PATTERNS_MAX,
            list.len(),
            list.contains(&p),
        )?;
        list.put(p, (), Stamp::of(ctx));
        Ok(())
    }

    pub fn remove_sender(
        &mut self,
        ctx: &OpContext,
        which: SenderList,
        pattern: &str,
    ) -> Result<()> {
        let p = sender_pattern(pattern)?;
        let list = self.sender_list_mut(which);
        let write = list.remove(&p, Stamp::of(ctx));
        list.prune(SENDER_PATTERNS_MAX);
        removed(write, "sender pattern", &p)
    }

    /// Normalised patterns, sorted.
    pub fn list_senders(&self, which: SenderList) -> Vec<String> {
        let list = match which {
            SenderList::Allow => &self.state.allow,
            SenderList::Block => &self.state.block,
        };
        list.iter().map(|(p, ())| p.clone()).collect()
    }

    /// Blocked (address or domain) wins over allowed, which wins over
    /// being a contact.
    pub fn classify_sender(&self, address: &str) -> SenderStatus {
        let addr = bare_address(address);
        let domain = addr.rsplit_once('@').map(|(_, d)| format!("@{d}"));
        let listed = |set: &LwwMap<()>| {
            set.contains(&addr) || domain.as_ref().is_some_and(|d| set.contains(d))
        };
        if listed(&self.state.block) {
            SenderStatus::Blocked
        } else if listed(&self.state.allow) {
            SenderStatus::Allowed
        } else if self.state.contacts.contains(&addr) {
            SenderStatus::Contact
        } else {
            SenderStatus::Unknown
        }
    }

    pub fn set_preference(&mut self, ctx: &OpContext, key: String, value: String) -> Result<()> {
        check_name("preference key", &key)?;
        check_size("preference value", PREFERENCE_VALUE_BYTES_MAX, value.len())?;
        let prefs = &mut self.state.preferences;
        check_room(
            "preferences",
            PREFERENCES_MAX,
            prefs.len(),
            prefs.contains(&key),
        )?;
        prefs.put(key, value, Stamp::of(ctx));
        Ok(())
    }

    pub fn remove_preference(&mut self, ctx: &OpContext, key: &str) -> Result<()> {
        let write = self.state.preferences.remove(key, Stamp::of(ctx));
        self.state.preferences.prune(PREFERENCES_MAX);
        removed(write, "preference", key)
    }

    pub fn get_preference(&self, key: &str) -> Option<String> {
        self.state.preferences.get(key).cloned()
    }

    /// Sorted by key.
    pub fn list_preferences(&self) -> Vec<(String, String)> {
        self.state
            .preferences
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Installs or replaces the plugin entry (last writer wins).
    pub fn install_plugin(&mut self, ctx: &OpContext, e: PluginEntry) -> Result<()> {
        check_name("plugin name", &e.name)?;
        if !is_hash_hex(&e.code_hash) {
            return Err(invalid_argument(format!(
                "plugin code hash {:?} is not 64 lower-case hex digits",
                e.code_hash
            )));
        }
        check_size("plugin config", PLUGIN_CONFIG_BYTES_MAX, e.config.len())?;
        let plugins = &mut self.state.plugins;
        check_room(
            "plugins",
            PLUGINS_MAX,
            plugins.len(),
            plugins.contains(&e.name),
        )?;
        let rec = PluginRec {
            code_hash: e.code_hash,
            config: e.config,
            order: e.order,
        };
        plugins.put(e.name, rec, Stamp::of(ctx));
        Ok(())
    }

    pub fn remove_plugin(&mut self, ctx: &OpContext, name: &str) -> Result<()> {
        let write = self.state.plugins.remove(name, Stamp::of(ctx));
        self.state.plugins.prune(PLUGINS_MAX);
        removed(write, "plugin", name)
    }

    /// In the order the filters run: by `order`, then name.
    pub fn list_plugins(&self) -> Vec<PluginEntry> {
        let mut out: Vec<PluginEntry> = self
            .state
            .plugins
            .iter()
            .map(|(name, p)| PluginEntry {
                name: name.clone(),
                code_hash: p.code_hash.clone(),
                config: p.config.clone(),
                order: p.order,
            })
            .collect();
        // Stable sort over name-ordered input keeps names ascending within
        // one `order`.
        out.sort_by_key(|p| p.order);
        out
    }
}

/// Refuses a new key past `max` live ones; replacing a live key is fine.
///
/// Trade-off: near the limit this is order-dependent (two replicas adding
/// different keys concurrently at `max - 1` each accept theirs, and a third
/// refuses whichever arrives second). Limits exist against abuse, far from
/// where a user's collections live, so this is accepted.
fn check_room(what: &str, max: usize, live: usize, replacing: bool) -> Result<()> {
    if !replacing && live + 1 > max {
        return Err(limit_reached(what, max, live + 1));
    }
    Ok(())
}

/// A remove succeeds unless the key was never there at all. A stale remove
/// (a newer write holds the key) is not an error: it is a concurrent
/// replica's remove that lost.
fn removed(write: Write, what: &str, key: &str) -> Result<()> {
    match write {
        Write::Applied | Write::Stale => Ok(()),
        Write::Unknown => Err(not_found(format!("{what} {key:?}"))),
    }
}

#[cfg(test)]
mod tests;

//! The address book, allow and block lists, preferences and filter
//! plugins: the small keyed collections around the mail.
//!
//! Addresses are compared case-insensitively (lower-cased keys), which is
//! what users expect even though RFC 5321 lets a local part be
//! case-sensitive; no real mail system relies on that.

use crate::error::{
    Result, already_exists, check_size, invalid_argument, limit_reached, not_found,
};
use crate::limits::{
    ADDRESS_BYTES_MAX, CONTACT_NAME_BYTES_MAX, CONTACT_NOTE_BYTES_MAX, CONTACTS_MAX,
    PLUGIN_CONFIG_BYTES_MAX, PLUGINS_MAX, PREFERENCE_VALUE_BYTES_MAX, PREFERENCES_MAX,
    SENDER_PATTERNS_MAX,
};
use crate::names::{check_name, is_hash_hex};
use crate::state::{ContactRec, Mailbox, PluginRec};
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
    pub fn add_contact(&mut self, _ctx: &OpContext, c: Contact) -> Result<()> {
        check_address(&c.address)?;
        check_size("contact name", CONTACT_NAME_BYTES_MAX, c.name.len())?;
        check_size("contact note", CONTACT_NOTE_BYTES_MAX, c.note.len())?;
        let key = c.address.to_lowercase();
        if self.state.contacts.contains_key(&key) {
            return Err(already_exists(format!("contact {key:?}")));
        }
        let n = self.state.contacts.len() + 1;
        if n > CONTACTS_MAX {
            return Err(limit_reached("contacts", CONTACTS_MAX, n));
        }
        self.state.contacts.insert(
            key,
            ContactRec {
                name: c.name,
                address: c.address,
                note: c.note,
            },
        );
        Ok(())
    }

    pub fn remove_contact(&mut self, _ctx: &OpContext, address: &str) -> Result<()> {
        let key = bare_address(address);
        match self.state.contacts.remove(&key) {
            Some(_) => Ok(()),
            None => Err(not_found(format!("contact {key:?}"))),
        }
    }

    /// Sorted by lower-cased address.
    pub fn list_contacts(&self) -> Vec<Contact> {
        self.state
            .contacts
            .values()
            .map(|c| Contact {
                name: c.name.clone(),
                address: c.address.clone(),
                note: c.note.clone(),
            })
            .collect()
    }

    fn sender_list_mut(&mut self, which: SenderList) -> &mut std::collections::BTreeSet<String> {
        match which {
            SenderList::Allow => &mut self.state.allow,
            SenderList::Block => &mut self.state.block,
        }
    }

    pub fn add_sender(&mut self, _ctx: &OpContext, which: SenderList, pattern: &str) -> Result<()> {
        let p = sender_pattern(pattern)?;
        let list = self.sender_list_mut(which);
        if list.contains(&p) {
            return Err(already_exists(format!("sender pattern {p:?}")));
        }
        let n = list.len() + 1;
        if n > SENDER_PATTERNS_MAX {
            return Err(limit_reached("sender patterns", SENDER_PATTERNS_MAX, n));
        }
        list.insert(p);
        Ok(())
    }

    pub fn remove_sender(
        &mut self,
        _ctx: &OpContext,
        which: SenderList,
        pattern: &str,
    ) -> Result<()> {
        let p = sender_pattern(pattern)?;
        if self.sender_list_mut(which).remove(&p) {
            Ok(())
        } else {
            Err(not_found(format!("sender pattern {p:?}")))
        }
    }

    /// Normalised patterns, sorted.
    pub fn list_senders(&self, which: SenderList) -> Vec<String> {
        let list = match which {
            SenderList::Allow => &self.state.allow,
            SenderList::Block => &self.state.block,
        };
        list.iter().cloned().collect()
    }

    /// Blocked (address or domain) wins over allowed, which wins over
    /// being a contact.
    pub fn classify_sender(&self, address: &str) -> SenderStatus {
        let addr = bare_address(address);
        let domain = addr.rsplit_once('@').map(|(_, d)| format!("@{d}"));
        let listed = |set: &std::collections::BTreeSet<String>| {
            set.contains(&addr) || domain.as_ref().is_some_and(|d| set.contains(d))
        };
        if listed(&self.state.block) {
            SenderStatus::Blocked
        } else if listed(&self.state.allow) {
            SenderStatus::Allowed
        } else if self.state.contacts.contains_key(&addr) {
            SenderStatus::Contact
        } else {
            SenderStatus::Unknown
        }
    }

    pub fn set_preference(&mut self, _ctx: &OpContext, key: String, value: String) -> Result<()> {
        check_name("preference key", &key)?;
        check_size("preference value", PREFERENCE_VALUE_BYTES_MAX, value.len())?;
        let n = self.state.preferences.len() + 1;
        if !self.state.preferences.contains_key(&key) && n > PREFERENCES_MAX {
            return Err(limit_reached("preferences", PREFERENCES_MAX, n));
        }
        self.state.preferences.insert(key, value);
        Ok(())
    }

    pub fn remove_preference(&mut self, _ctx: &OpContext, key: &str) -> Result<()> {
        match self.state.preferences.remove(key) {
            Some(_) => Ok(()),
            None => Err(not_found(format!("preference {key:?}"))),
        }
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

    pub fn install_plugin(&mut self, _ctx: &OpContext, e: PluginEntry) -> Result<()> {
        check_name("plugin name", &e.name)?;
        if !is_hash_hex(&e.code_hash) {
            return Err(invalid_argument(format!(
                "plugin code hash {:?} is not 64 lower-case hex digits",
                e.code_hash
            )));
        }
        check_size("plugin config", PLUGIN_CONFIG_BYTES_MAX, e.config.len())?;
        if self.state.plugins.contains_key(&e.name) {
            return Err(already_exists(format!("plugin {:?}", e.name)));
        }
        let n = self.state.plugins.len() + 1;
        if n > PLUGINS_MAX {
            return Err(limit_reached("plugins", PLUGINS_MAX, n));
        }
        self.state.plugins.insert(
            e.name,
            PluginRec {
                code_hash: e.code_hash,
                config: e.config,
                order: e.order,
            },
        );
        Ok(())
    }

    pub fn remove_plugin(&mut self, _ctx: &OpContext, name: &str) -> Result<()> {
        match self.state.plugins.remove(name) {
            Some(_) => Ok(()),
            None => Err(not_found(format!("plugin {name:?}"))),
        }
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

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;

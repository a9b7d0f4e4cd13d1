//! One type per mailbox verb, each tied to the answer it gets (mini-redis
//! has one type per command in `cmd/` the same way): a caller asks
//! `ListFolder { .. }` and gets a `MailPage` back, not a [`Response`] to
//! take apart by hand.
//!
//! A verb converts into the one [`Request`] that the wire and the operation
//! log carry, so neither format changes, and its [`Verb::answer`] takes its
//! answer out of a [`Response`]: that is the one place per verb where the
//! variant is checked. Any other variant is an [`UnexpectedAnswer`], which
//! only a mismatched mailbox component or peer can cause.
//!
//! The typed calls built on this sit next to the untyped ones:
//! `MailboxRef::ask` in dem-client (a user's signed owner calls) and
//! `Mailboxes::ask` in dem-node (a host calling the mailboxes it holds).
//! Code that takes a `Request` off the wire (the mailbox actor, a host
//! serving an owner call) stays untyped.

use crate::mail::{
    Contact, Delivered, FlagState, FolderInfo, GetParts, MailPage, MailRead, MailSummary,
    MailboxStats, NewMail, Placement, PluginEntry, SearchQuery, SenderList, SenderStatus,
    Tombstone,
};

use super::{Request, Response};

/// A call on a mailbox whose answer has a known type.
pub trait Verb: Into<Request> {
    /// The export's name, as [`Request::name`] gives it.
    const NAME: &'static str;
    /// What the mailbox answers this verb with.
    type Answer;
    /// Takes this verb's answer out of the mailbox's `Response`.
    fn answer(response: Response) -> Result<Self::Answer, UnexpectedAnswer>;
}

/// A mailbox answered a verb with a `Response` that verb never gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mailbox answered `{verb}` with an unexpected {answer}")]
pub struct UnexpectedAnswer {
    /// The verb asked ([`Verb::NAME`]).
    pub verb: &'static str,
    /// The variant it got ([`Response::name`]).
    pub answer: &'static str,
}

/// Defines each verb: its struct (the fields of its `Request` variant, in
/// the same order), its conversion into that variant, and the `Response`
/// variant it takes its answer from (`Done` answers `()`).
macro_rules! verbs {
    (@type $(#[$doc:meta])* $verb:ident {}) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $verb;
    };
    (@type $(#[$doc:meta])* $verb:ident {
        $($(#[$field_doc:meta])* $field:ident: $ty:ty),+
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $verb {
            $($(#[$field_doc])* pub $field: $ty),+
        }
    };

    (@request $value:ident $verb:ident {}) => {{
        let _: $verb = $value;
        Request::$verb
    }};
    (@request $value:ident $verb:ident { $($field:ident),+ }) => {{
        let $verb { $($field),+ } = $value;
        Request::$verb { $($field),+ }
    }};

    (@answer $answer:ident) => {
        type Answer = ();
        fn answer(response: Response) -> Result<(), UnexpectedAnswer> {
            match response {
                Response::$answer => Ok(()),
                other => Err(UnexpectedAnswer {
                    verb: Self::NAME,
                    answer: other.name(),
                }),
            }
        }
    };
    (@answer $answer:ident ($answer_ty:ty)) => {
        type Answer = $answer_ty;
        fn answer(response: Response) -> Result<$answer_ty, UnexpectedAnswer> {
            match response {
                Response::$answer(answer) => Ok(answer),
                other => Err(UnexpectedAnswer {
                    verb: Self::NAME,
                    answer: other.name(),
                }),
            }
        }
    };

    ($(
        $(#[$doc:meta])*
        $verb:ident $name:literal {
            $($(#[$field_doc:meta])* $field:ident: $ty:ty),* $(,)?
        } => $answer:ident $(($answer_ty:ty))?;
    )*) => {
        $(
            verbs!(@type $(#[$doc])* $verb { $($(#[$field_doc])* $field: $ty),* });

            impl From<$verb> for Request {
                fn from(verb: $verb) -> Request {
                    verbs!(@request verb $verb { $($field),* })
                }
            }

            impl Verb for $verb {
                const NAME: &'static str = $name;
                verbs!(@answer $answer $(($answer_ty))?);
            }
        )*

        /// Every verb's name, for the tests to check they try them all.
        #[cfg(test)]
        const NAMES: &[&str] = &[$($name),*];
    };
}

verbs! {
    /// Files a mail where the filters decided; the actor builds this from
    /// an incoming mail after running the plugins.
    Deliver "deliver" { mail: NewMail, place: Placement } => Delivered(Delivered);
    /// One page of a folder, newest first, headers only.
    ListFolder "list-folder" {
        folder: String,
        /// Mails to skip, newest first.
        offset: u32,
        limit: u32,
    } => Page(MailPage);
    /// One mail: its summary and the parts asked for.
    Get "get" { id: String, parts: GetParts } => Detail(Box<MailRead>);
    /// Adds and removes flags and keywords; answers the mail's flags after.
    SetFlags "set-flags" { id: String, add: FlagState, remove: FlagState } => Flags(FlagState);
    /// Moves a mail into another folder; answers its UID there.
    MoveMail "move-mail" { id: String, folder: String } => Uid(u32);
    /// Deletes a mail, leaving a tombstone.
    DeleteMail "delete-mail" { id: String } => Done;
    /// A page of the tombstones of deleted mails.
    DeleteHistory "delete-history" { offset: u32, limit: u32 } => Tombstones(Vec<Tombstone>);
    /// The mails that match a query, at most `limit`.
    Search "search" { query: SearchQuery, limit: u32 } => Summaries(Vec<MailSummary>);
    /// Creates a folder; answers it.
    CreateFolder "create-folder" { name: String } => Folder(FolderInfo);
    /// Renames a folder; answers it under its new name.
    RenameFolder "rename-folder" { name: String, new_name: String } => Folder(FolderInfo);
    /// Deletes an empty folder.
    DeleteFolder "delete-folder" { name: String } => Done;
    /// Every folder.
    ListFolders "list-folders" {} => Folders(Vec<FolderInfo>);
    /// Adds (or replaces) an address book entry.
    AddContact "add-contact" { contact: Contact } => Done;
    /// Removes an address book entry.
    RemoveContact "remove-contact" { address: String } => Done;
    /// The address book.
    ListContacts "list-contacts" {} => Contacts(Vec<Contact>);
    /// Adds a pattern to the allow or block list.
    AddSender "add-sender" { which: SenderList, pattern: String } => Done;
    /// Removes a pattern from the allow or block list.
    RemoveSender "remove-sender" { which: SenderList, pattern: String } => Done;
    /// The patterns of the allow or block list.
    ListSenders "list-senders" { which: SenderList } => Senders(Vec<String>);
    /// What the mailbox knows of a sender (contact, allowed, blocked).
    ClassifySender "classify-sender" { address: String } => SenderStatus(SenderStatus);
    /// Sets a preference.
    SetPreference "set-preference" { key: String, value: String } => Done;
    /// Removes a preference.
    RemovePreference "remove-preference" { key: String } => Done;
    /// One preference, if set.
    GetPreference "get-preference" { key: String } => Preference(Option<String>);
    /// Every preference, as (key, value).
    ListPreferences "list-preferences" {} => Preferences(Vec<(String, String)>);
    /// Installs a filter plugin whose code the host already holds.
    InstallPlugin "install-plugin" { entry: PluginEntry } => Done;
    /// Removes a filter plugin.
    RemovePlugin "remove-plugin" { name: String } => Done;
    /// The installed filter plugins, in the order they run.
    ListPlugins "list-plugins" {} => Plugins(Vec<PluginEntry>);
    /// Counts and sizes of the mailbox's state.
    Stats "stats" {} => Stats(MailboxStats);
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use super::*;
    use crate::mail::{BlobRef, MailDetail, MailFlags};

    /// `verb` becomes `request`, takes `expected` out of `right`, and
    /// refuses another variant with an `UnexpectedAnswer` naming both.
    fn check<V>(verb: V, request: &Request, right: Response, expected: V::Answer)
    where
        V: Verb,
        V::Answer: PartialEq + Debug,
    {
        assert_eq!(&verb.into(), request);
        assert_eq!(V::NAME, request.name());
        assert_eq!(V::answer(right.clone()), Ok(expected), "{}", V::NAME);
        let wrong = match right {
            Response::Done => Response::Uid(7),
            _ => Response::Done,
        };
        assert_eq!(
            V::answer(wrong.clone()),
            Err(UnexpectedAnswer {
                verb: V::NAME,
                answer: wrong.name(),
            })
        );
    }

    /// Checks the verb of `request`. The match is exhaustive, so a new
    /// `Request` variant does not compile here until it has a verb.
    fn check_verb_of(request: Request) {
        let r = &request;
        match request.clone() {
            Request::Deliver { mail, place } => {
                let d = delivered(&place);
                check(
                    Deliver { mail, place },
                    r,
                    Response::Delivered(d.clone()),
                    d,
                );
            }
            Request::ListFolder {
                folder,
                offset,
                limit,
            } => {
                let page = MailPage {
                    total: 1,
                    items: vec![summary()],
                };
                let verb = ListFolder {
                    folder,
                    offset,
                    limit,
                };
                check(verb, r, Response::Page(page.clone()), page);
            }
            Request::Get { id, parts } => {
                let detail = Box::new(MailRead {
                    detail: MailDetail {
                        summary: summary(),
                        references: vec![],
                        message: BlobRef::of(b"hi"),
                        attachments: vec![],
                    },
                    bytes: Some(b"hi".to_vec()),
                });
                check(
                    Get { id, parts },
                    r,
                    Response::Detail(detail.clone()),
                    detail,
                );
            }
            Request::SetFlags { id, add, remove } => {
                let flags = FlagState {
                    flags: MailFlags::SEEN,
                    keywords: vec!["work".into()],
                };
                let verb = SetFlags { id, add, remove };
                check(verb, r, Response::Flags(flags.clone()), flags);
            }
            Request::MoveMail { id, folder } => {
                check(MoveMail { id, folder }, r, Response::Uid(9), 9);
            }
            Request::DeleteMail { id } => check(DeleteMail { id }, r, Response::Done, ()),
            Request::DeleteHistory { offset, limit } => {
                let t = vec![Tombstone {
                    id: "m1".into(),
                    deleted_ms: 5,
                    hlc: 6,
                }];
                let verb = DeleteHistory { offset, limit };
                check(verb, r, Response::Tombstones(t.clone()), t);
            }
            Request::Search { query, limit } => {
                let found = vec![summary()];
                let verb = Search { query, limit };
                check(verb, r, Response::Summaries(found.clone()), found);
            }
            Request::CreateFolder { name } => {
                let verb = CreateFolder { name };
                check(verb, r, Response::Folder(folder("Work")), folder("Work"));
            }
            Request::RenameFolder { name, new_name } => {
                let verb = RenameFolder { name, new_name };
                check(verb, r, Response::Folder(folder("Job")), folder("Job"));
            }
            Request::DeleteFolder { name } => check(DeleteFolder { name }, r, Response::Done, ()),
            Request::ListFolders => {
                let all = vec![folder("INBOX"), folder("Job")];
                check(ListFolders, r, Response::Folders(all.clone()), all);
            }
            Request::AddContact { contact } => {
                check(AddContact { contact }, r, Response::Done, ());
            }
            Request::RemoveContact { address } => {
                check(RemoveContact { address }, r, Response::Done, ());
            }
            Request::ListContacts => {
                let all = vec![contact()];
                check(ListContacts, r, Response::Contacts(all.clone()), all);
            }
            Request::AddSender { which, pattern } => {
                check(AddSender { which, pattern }, r, Response::Done, ());
            }
            Request::RemoveSender { which, pattern } => {
                check(RemoveSender { which, pattern }, r, Response::Done, ());
            }
            Request::ListSenders { which } => {
                let all = vec!["@example.org".to_string()];
                check(
                    ListSenders { which },
                    r,
                    Response::Senders(all.clone()),
                    all,
                );
            }
            Request::ClassifySender { address } => {
                let status = SenderStatus::Blocked;
                let verb = ClassifySender { address };
                check(verb, r, Response::SenderStatus(status), status);
            }
            Request::SetPreference { key, value } => {
                check(SetPreference { key, value }, r, Response::Done, ());
            }
            Request::RemovePreference { key } => {
                check(RemovePreference { key }, r, Response::Done, ());
            }
            Request::GetPreference { key } => {
                let value = Some("-- A".to_string());
                let verb = GetPreference { key };
                check(verb, r, Response::Preference(value.clone()), value);
            }
            Request::ListPreferences => {
                let all = vec![("signature".to_string(), "-- A".to_string())];
                check(ListPreferences, r, Response::Preferences(all.clone()), all);
            }
            Request::InstallPlugin { entry } => {
                check(InstallPlugin { entry }, r, Response::Done, ());
            }
            Request::RemovePlugin { name } => check(RemovePlugin { name }, r, Response::Done, ()),
            Request::ListPlugins => {
                let all = vec![plugin()];
                check(ListPlugins, r, Response::Plugins(all.clone()), all);
            }
            Request::Stats => {
                let stats = MailboxStats {
                    mails: 1,
                    mail_bytes: 2,
                    folders: 3,
                    contacts: 4,
                    tombstones: 5,
                    plugins: 6,
                    state_bytes: 7,
                };
                check(Stats, r, Response::Stats(stats), stats);
            }
        }
    }

    /// A delivery's answer, built from its serde form: `Delivered` gains
    /// the placement the mailbox applied in work going on beside this, and
    /// this builds either shape (serde skips a field the struct lacks).
    fn delivered(place: &Placement) -> Delivered {
        serde_json::from_value(serde_json::json!({
            "uid": 3,
            "folder": "INBOX",
            "duplicate": false,
            "placement": place,
        }))
        .expect("a delivery's answer")
    }

    fn summary() -> MailSummary {
        MailSummary {
            id: "m1".into(),
            folder: "INBOX".into(),
            uid: 1,
            from: "bob@example.org".into(),
            to: vec!["alice@example.org".into()],
            cc: vec![],
            subject: "Hello".into(),
            date_ms: 1,
            received_ms: 2,
            message_id: "<m1@example.org>".into(),
            in_reply_to: None,
            flags: MailFlags::empty(),
            keywords: vec![],
            size_bytes: 10,
            attachment_count: 0,
            spam_score: None,
        }
    }

    fn folder(name: &str) -> FolderInfo {
        FolderInfo {
            name: name.into(),
            uid_validity: 1,
            uid_next: 2,
            total: 1,
            unseen: 0,
            size_bytes: 10,
        }
    }

    fn contact() -> Contact {
        Contact {
            name: "Bob".into(),
            address: "bob@example.org".into(),
            note: String::new(),
        }
    }

    fn plugin() -> PluginEntry {
        PluginEntry {
            name: "rules".into(),
            code_hash: "cd".repeat(32),
            config: String::new(),
            order: 5,
        }
    }

    /// One request of every kind, with arguments that are not defaults so
    /// a field dropped or swapped on the way shows.
    fn one_of_each() -> Vec<Request> {
        let id = || "m1".to_string();
        let flags = |f| FlagState {
            flags: f,
            keywords: vec![],
        };
        vec![
            Request::Deliver {
                mail: NewMail {
                    id: id(),
                    subject: "Hello".into(),
                    ..NewMail::default()
                },
                place: Placement {
                    folder: "Junk".into(),
                    ..Placement::default()
                },
            },
            Request::ListFolder {
                folder: "INBOX".into(),
                offset: 10,
                limit: 20,
            },
            Request::Get {
                id: id(),
                parts: GetParts { message: None },
            },
            Request::SetFlags {
                id: id(),
                add: flags(MailFlags::SEEN),
                remove: flags(MailFlags::FLAGGED),
            },
            Request::MoveMail {
                id: id(),
                folder: "Work".into(),
            },
            Request::DeleteMail { id: id() },
            Request::DeleteHistory {
                offset: 3,
                limit: 4,
            },
            Request::Search {
                query: SearchQuery {
                    subject: Some("invoice".into()),
                    ..SearchQuery::default()
                },
                limit: 7,
            },
            Request::CreateFolder {
                name: "Work".into(),
            },
            Request::RenameFolder {
                name: "Work".into(),
                new_name: "Job".into(),
            },
            Request::DeleteFolder { name: "Job".into() },
            Request::ListFolders,
            Request::AddContact { contact: contact() },
            Request::RemoveContact {
                address: "bob@example.org".into(),
            },
            Request::ListContacts,
            Request::AddSender {
                which: SenderList::Allow,
                pattern: "@example.org".into(),
            },
            Request::RemoveSender {
                which: SenderList::Block,
                pattern: "spam@example.org".into(),
            },
            Request::ListSenders {
                which: SenderList::Block,
            },
            Request::ClassifySender {
                address: "bob@example.org".into(),
            },
            Request::SetPreference {
                key: "signature".into(),
                value: "-- A".into(),
            },
            Request::RemovePreference {
                key: "signature".into(),
            },
            Request::GetPreference {
                key: "signature".into(),
            },
            Request::ListPreferences,
            Request::InstallPlugin { entry: plugin() },
            Request::RemovePlugin {
                name: "rules".into(),
            },
            Request::ListPlugins,
            Request::Stats,
        ]
    }

    #[test]
    fn every_verb_becomes_its_request_and_takes_only_its_answer() {
        let requests = one_of_each();
        let mut names: Vec<_> = requests.iter().map(Request::name).collect();
        names.sort_unstable();
        let mut verbs = NAMES.to_vec();
        verbs.sort_unstable();
        assert_eq!(names, verbs, "one request of each kind");
        for request in requests {
            check_verb_of(request);
        }
    }

    #[test]
    fn an_unexpected_answer_names_the_verb_and_what_came() {
        let e = ListFolder::answer(Response::Stats(MailboxStats {
            mails: 0,
            mail_bytes: 0,
            folders: 0,
            contacts: 0,
            tombstones: 0,
            plugins: 0,
            state_bytes: 0,
        }))
        .unwrap_err();
        assert_eq!(
            e,
            UnexpectedAnswer {
                verb: "list-folder",
                answer: "Stats",
            }
        );
        assert_eq!(
            e.to_string(),
            "mailbox answered `list-folder` with an unexpected Stats"
        );
    }
}

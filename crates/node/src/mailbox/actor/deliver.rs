//! The actor's delivery path: the mailbox's filter plugins run on a new
//! mail before the guest files it, each in its own live instance that is
//! kept between deliveries (instantiating per mail would cost more than
//! the filter), refuelled per call and dropped when it fails.

use std::sync::Arc;

use super::{E, MailboxActor, Reply, Tracked};
use crate::mailbox::filters::Placing;
use crate::mailbox::incoming::Incoming;
use crate::mailbox::request::verbs::{ClassifySender, ListPlugins};
use crate::mailbox::request::{Request, Verb};
use dem_proto::ids::CodeHash;
use dem_proto::mail::{MailView, PluginEntry, SenderStatus, Verdict};
use dem_runtime::RuntimeError;
use dem_runtime::filter::FilterError;

impl MailboxActor {
    /// Runs the filters, then delivers where they decided.
    ///
    /// It is logged with the placement the guest reports it applied
    /// (see `run_request`), not the one the filters chose.
    pub(super) async fn handle_deliver(&mut self, incoming: Incoming, reply: Reply<Tracked>) {
        let Incoming {
            mail,
            message,
            mut view,
        } = incoming;
        if let Err(e) = self.wake().await {
            let _ = reply.send(Err(e));
            return;
        }
        let plugins = match self.installed_plugins().await {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut placing = Placing::default();
        if !plugins.is_empty() {
            // A sender the mailbox cannot classify is one it does not know.
            let sender = self
                .ask(ClassifySender {
                    address: mail.from.clone(),
                })
                .await
                .unwrap_or(SenderStatus::Unknown);
            view.sender = sender;
            for plugin in plugins.iter() {
                match self.run_filter(plugin, &mut view).await {
                    Err(busy) => {
                        // Delivering without the filter would file the
                        // mail where its owner did not want it: refuse,
                        // retryably, instead.
                        let _ = reply.send(Err(E::Runtime(busy)));
                        return;
                    }
                    Ok(Some(verdict)) => {
                        if let Some(reason) = placing.apply(verdict) {
                            let _ = reply.send(Err(E::Rejected {
                                plugin: plugin.name.clone(),
                                reason,
                            }));
                            return;
                        }
                    }
                    Ok(None) => continue,
                }
            }
        }
        self.run_request_with(
            Request::Deliver {
                mail,
                place: placing.finish(),
            },
            Some(message),
            reply,
        )
        .await;
    }

    /// The installed plugins, in the order they run.
    async fn installed_plugins(&mut self) -> Result<Arc<[PluginEntry]>, E> {
        if let Some(p) = &self.plugins {
            return Ok(p.clone());
        }
        let plugins = self.listed_plugins().await?;
        self.filters
            .retain(|name, _| plugins.iter().any(|p| &p.name == name));
        let plugins: Arc<[PluginEntry]> = plugins.into();
        self.plugins = Some(plugins.clone());
        Ok(plugins)
    }

    /// The plugins as the guest lists them. A component that answers the
    /// list with anything else has none to run (nor to ship on a move).
    pub(super) async fn listed_plugins(&mut self) -> Result<Vec<PluginEntry>, E> {
        match self.ask(ListPlugins).await {
            Err(E::Unexpected(_)) => Ok(Vec::new()),
            listed => listed,
        }
    }

    /// A typed `read`: the verb's own answer, or `E::Unexpected`.
    async fn ask<V: Verb>(&mut self, verb: V) -> Result<V::Answer, E> {
        let response = self.read(verb.into()).await?;
        Ok(V::answer(response)?)
    }

    /// Runs one plugin, reusing its live instance; `None` if it failed (it
    /// is then skipped, and the mail delivered anyway). An error only when
    /// no instance slot came free in time: the delivery is then refused
    /// as "busy, retry" rather than made without the filter.
    async fn run_filter(
        &mut self,
        plugin: &PluginEntry,
        view: &mut MailView,
    ) -> Result<Option<Verdict>, RuntimeError> {
        let code: CodeHash = match plugin.code_hash.parse() {
            Ok(code) => code,
            Err(e) => {
                tracing::warn!(plugin = %plugin.name, "skipped: {e}");
                return Ok(None);
            }
        };
        if self
            .filters
            .get(&plugin.name)
            .is_none_or(|f| *f.code() != code)
        {
            match self.runtime.instantiate_filter(&code, &plugin.name).await {
                Ok(f) => {
                    self.filters.insert(plugin.name.clone(), f);
                }
                Err(FilterError::Runtime(busy)) if busy.is_busy() => return Err(busy),
                Err(e) => {
                    tracing::warn!(plugin = %plugin.name, "skipped, mail delivered anyway: {e}");
                    return Ok(None);
                }
            }
        }
        let Some(filter) = self.filters.get_mut(&plugin.name) else {
            return Ok(None);
        };
        match filter.run(view, &plugin.config).await {
            Ok(verdict) => Ok(Some(verdict)),
            Err(e) => {
                tracing::warn!(plugin = %plugin.name, "skipped, mail delivered anyway: {e}");
                self.filters.remove(&plugin.name);
                Ok(None)
            }
        }
    }
}

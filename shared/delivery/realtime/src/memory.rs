//! The in-process connection registry used by `agentwire dev`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{Connection, ConnectionRegistry, Member, RegistryError};

#[derive(Default)]
struct State {
    connections: HashMap<String, (Connection, BTreeSet<String>)>,
    subscribers: HashMap<String, BTreeSet<String>>,
}

/// Connections and subscriptions in memory: they live as long as the process, as the
/// sockets they describe do.
#[derive(Default)]
pub struct InMemoryConnectionRegistry {
    state: Mutex<State>,
}

impl InMemoryConnectionRegistry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ConnectionRegistry for InMemoryConnectionRegistry {
    async fn connect(&self, connection: Connection) -> Result<(), RegistryError> {
        self.state()
            .connections
            .insert(connection.id.clone(), (connection, BTreeSet::new()));
        Ok(())
    }

    async fn disconnect(
        &self,
        connection_id: &str,
    ) -> Result<Option<(Connection, Vec<String>)>, RegistryError> {
        let mut state = self.state();
        let Some((connection, sessions)) = state.connections.remove(connection_id) else {
            return Ok(None);
        };
        for session in &sessions {
            if let Some(subscribers) = state.subscribers.get_mut(session) {
                subscribers.remove(connection_id);
                if subscribers.is_empty() {
                    state.subscribers.remove(session);
                }
            }
        }
        Ok(Some((connection, sessions.into_iter().collect())))
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, RegistryError> {
        Ok(self
            .state()
            .connections
            .get(connection_id)
            .map(|(c, _)| c.clone()))
    }

    async fn subscribe(&self, connection_id: &str, session: &str) -> Result<bool, RegistryError> {
        let mut state = self.state();
        let Some((_, sessions)) = state.connections.get_mut(connection_id) else {
            return Err(RegistryError(format!("unknown connection {connection_id}")));
        };
        let added = sessions.insert(session.to_owned());
        state
            .subscribers
            .entry(session.to_owned())
            .or_default()
            .insert(connection_id.to_owned());
        Ok(added)
    }

    async fn unsubscribe(&self, connection_id: &str, session: &str) -> Result<bool, RegistryError> {
        let mut state = self.state();
        let removed = state
            .connections
            .get_mut(connection_id)
            .is_some_and(|(_, sessions)| sessions.remove(session));
        if let Some(subscribers) = state.subscribers.get_mut(session) {
            subscribers.remove(connection_id);
            if subscribers.is_empty() {
                state.subscribers.remove(session);
            }
        }
        Ok(removed)
    }

    async fn subscribers(&self, session: &str) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .state()
            .subscribers
            .get(session)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn presence(&self, session: &str) -> Result<Vec<Member>, RegistryError> {
        let state = self.state();
        let mut users: BTreeMap<String, usize> = BTreeMap::new();
        for id in state.subscribers.get(session).into_iter().flatten() {
            if let Some((connection, _)) = state.connections.get(id) {
                let user = connection
                    .claims
                    .user
                    .clone()
                    .unwrap_or_else(|| "anonymous".into());
                *users.entry(user).or_default() += 1;
            }
        }
        Ok(users
            .into_iter()
            .map(|(user, connections)| Member { user, connections })
            .collect())
    }
}

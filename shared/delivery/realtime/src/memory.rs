//! The in-process connection registry used by `agentwire dev`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use agentwire_session::{Clock, SystemClock};
use async_trait::async_trait;

use crate::ports::{
    Announce, Connection, ConnectionRegistry, Disconnected, Member, PRESENCE_WINDOW_MS,
    RegistryError, Subscriber, Subscription,
};

/// What the log says about one user in one session (see [`Announce`]).
#[derive(Default)]
struct Announced {
    /// The log has the user's join without its leave.
    present: bool,
    /// When the last join was announced (Unix ms).
    joined_at_ms: Option<i64>,
}

#[derive(Default)]
struct State {
    connections: HashMap<String, (Connection, BTreeSet<String>)>,
    subscribers: HashMap<String, BTreeSet<String>>,
    /// By (session, user).
    announced: HashMap<(String, String), Announced>,
    /// Changes since `announced` was last swept of entries that no longer matter.
    since_sweep: usize,
}

fn user_of(connection: &Connection) -> String {
    connection
        .claims
        .user
        .clone()
        .unwrap_or_else(|| "anonymous".into())
}

impl State {
    /// How many of `user`'s connections follow `session`.
    fn connections_of(&self, session: &str, user: &str) -> usize {
        self.subscribers
            .get(session)
            .into_iter()
            .flatten()
            .filter(|id| {
                self.connections
                    .get(*id)
                    .is_some_and(|(c, _)| user_of(c) == user)
            })
            .count()
    }

    /// Brings the announced state of `user` in `session` in line with the subscriptions,
    /// within the rate limit; returns what to append.
    fn reconcile(&mut self, session: &str, user: &str, now_ms: i64) -> Option<Announce> {
        let present = self.connections_of(session, user) > 0;
        let key = (session.to_owned(), user.to_owned());
        let state = self.announced.entry(key).or_default();
        let announce = match (present, state.present) {
            (true, false)
                if state
                    .joined_at_ms
                    .is_none_or(|at| at + PRESENCE_WINDOW_MS <= now_ms) =>
            {
                state.present = true;
                state.joined_at_ms = Some(now_ms);
                Some(Announce::Join)
            }
            (false, true) => {
                state.present = false;
                Some(Announce::Leave)
            }
            _ => None,
        };
        self.since_sweep += 1;
        if self.since_sweep >= 1024 {
            // Entries only matter while announced or inside their window.
            self.since_sweep = 0;
            self.announced.retain(|_, a| {
                a.present
                    || a.joined_at_ms
                        .is_some_and(|at| at + PRESENCE_WINDOW_MS > now_ms)
            });
        }
        announce
    }

    fn remove_subscriber(&mut self, session: &str, connection_id: &str) {
        if let Some(subscribers) = self.subscribers.get_mut(session) {
            subscribers.remove(connection_id);
            if subscribers.is_empty() {
                self.subscribers.remove(session);
            }
        }
    }
}

/// Connections and subscriptions in memory: they live as long as the process, as the
/// sockets they describe do.
pub struct InMemoryConnectionRegistry {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryConnectionRegistry {
    fn default() -> InMemoryConnectionRegistry {
        InMemoryConnectionRegistry::with_clock(Arc::new(SystemClock))
    }
}

impl InMemoryConnectionRegistry {
    /// A registry timing presence's rate limit by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> InMemoryConnectionRegistry {
        InMemoryConnectionRegistry {
            state: Mutex::default(),
            clock,
        }
    }

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

    async fn disconnect(&self, connection_id: &str) -> Result<Option<Disconnected>, RegistryError> {
        let now_ms = self.clock.now_ms();
        let mut state = self.state();
        let Some((connection, sessions)) = state.connections.remove(connection_id) else {
            return Ok(None);
        };
        let user = user_of(&connection);
        let mut leaves = Vec::new();
        for session in &sessions {
            state.remove_subscriber(session, connection_id);
            if state.reconcile(session, &user, now_ms) == Some(Announce::Leave) {
                leaves.push(session.clone());
            }
        }
        Ok(Some(Disconnected {
            connection,
            sessions: sessions.into_iter().collect(),
            leaves,
        }))
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, RegistryError> {
        Ok(self
            .state()
            .connections
            .get(connection_id)
            .map(|(c, _)| c.clone()))
    }

    async fn subscribe(
        &self,
        connection_id: &str,
        session: &str,
    ) -> Result<Subscription, RegistryError> {
        let now_ms = self.clock.now_ms();
        let mut state = self.state();
        let Some((connection, sessions)) = state.connections.get_mut(connection_id) else {
            return Err(RegistryError(format!("unknown connection {connection_id}")));
        };
        let user = user_of(connection);
        let changed = sessions.insert(session.to_owned());
        state
            .subscribers
            .entry(session.to_owned())
            .or_default()
            .insert(connection_id.to_owned());
        let announce = state.reconcile(session, &user, now_ms);
        Ok(Subscription { changed, announce })
    }

    async fn unsubscribe(
        &self,
        connection_id: &str,
        session: &str,
    ) -> Result<Subscription, RegistryError> {
        let now_ms = self.clock.now_ms();
        let mut state = self.state();
        let (changed, user) = match state.connections.get_mut(connection_id) {
            Some((connection, sessions)) => (sessions.remove(session), Some(user_of(connection))),
            None => (false, None),
        };
        state.remove_subscriber(session, connection_id);
        let announce = user.and_then(|user| state.reconcile(session, &user, now_ms));
        Ok(Subscription { changed, announce })
    }

    async fn subscribers(&self, session: &str) -> Result<Vec<Subscriber>, RegistryError> {
        let state = self.state();
        Ok(state
            .subscribers
            .get(session)
            .into_iter()
            .flatten()
            .map(|id| Subscriber {
                id: id.clone(),
                token_exp: state.connections.get(id).map(|(c, _)| c.claims.exp),
            })
            .collect())
    }

    async fn subscriptions(&self, connection_id: &str) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .state()
            .connections
            .get(connection_id)
            .map(|(_, sessions)| sessions.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn presence(&self, session: &str) -> Result<Vec<Member>, RegistryError> {
        let state = self.state();
        let mut users: BTreeMap<String, usize> = BTreeMap::new();
        for id in state.subscribers.get(session).into_iter().flatten() {
            if let Some((connection, _)) = state.connections.get(id) {
                *users.entry(user_of(connection)).or_default() += 1;
            }
        }
        Ok(users
            .into_iter()
            .map(|(user, connections)| Member { user, connections })
            .collect())
    }
}

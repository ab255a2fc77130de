//! The PostgreSQL backend: [`PostgresStore`], a bounded connection pool that several berth
//! processes may share, schema from `migrations/postgres`; leadership is a session-level
//! advisory lock held on a dedicated connection that a keeper task watches.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgNotification, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres};
use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::Backend;
use crate::sql::{self, Dialect};
use crate::{Lease, SandboxChange, StoreError};

/// Connections per process; several processes share one server, whose default limit is 100.
const MAX_CONNECTIONS: u32 = 10;
/// How long a caller waits for a pooled connection (including the server coming back).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening a connection of our own may take: start-up and `try_lead` fail fast on a
/// wrong or unreachable address instead of waiting out TCP's own timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `application_name` of the pooled connections, as `pg_stat_activity` shows them.
const APPLICATION_NAME: &str = "berth";
/// `application_name` of the connections holding leadership, so operators (and tests) can
/// tell them apart.
pub const LEADER_APPLICATION_NAME: &str = "berth-leader";
/// How often the lease keeper checks its connection.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a check may take before the connection counts as lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The channel migration 0005 announces every sandbox write on.
const CHANGE_CHANNEL: &str = "berth_sandbox_changes";
/// Announcements held for a follower that has not taken them yet; past this, they are dropped
/// (its poll catches up) rather than held without bound.
const CHANGE_BUFFER: usize = 4096;
/// The pause before listening again after the listening connection failed.
const CHANGE_RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Takes the advisory lock of a deployment. The key is a 64-bit hash of a namespaced name, so
/// it cannot meet another application's small integer keys by accident.
const TRY_LEAD: &str = "SELECT pg_try_advisory_lock(hashtextextended('berth-leader/' || $1, 0))";

/// Sandboxes in one PostgreSQL database. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// For the dedicated connections of leases (the password stays in here, never printed).
    options: PgConnectOptions,
    /// `host:port/db`, for messages.
    location: String,
}

/// By hand: the connect options hold the password.
impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) and applies
    /// pending migrations (several processes starting at once take turns: sqlx's migrator holds
    /// an advisory lock). Fails within 5 s with `Unavailable` when the server does not answer;
    /// no message ever contains the password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // The parser's messages never quote the URL, so none can leak the password.
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Other(format!("invalid PostgreSQL URL: {e}")))?;
        let options = options.application_name(APPLICATION_NAME);
        let location = location(&options);

        // The first connection is opened by hand, not through the pool: the pool retries a
        // refused connection until its acquire timeout and then reports only that it timed out.
        let conn = connect_once(&options, &location).await?;
        close_quietly(conn).await;

        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        // Through the pool rather than on the connection above: the migrator's future over a
        // `&mut PgConnection` is not provably `Send`, and callers spawn `connect`.
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| migrate_error(&location, e))?;
        tracing::debug!(location = %location, "connected postgres store");
        Ok(PostgresStore {
            pool,
            options,
            location,
        })
    }

    /// Closes every pooled connection, waiting for in-flight queries. Later calls fail with
    /// `Unavailable`; leases already taken keep their own connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `host:port/db` of `options`, the socket directory standing in for the host.
fn location(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    match options.get_socket() {
        Some(socket) => format!("{}/{database}", socket.display()),
        None => {
            let host = options.get_host();
            // An IPv6 address needs brackets before the port (URLs keep theirs).
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            format!("{host}:{}/{database}", options.get_port())
        }
    }
}

/// Opens one connection outside the pool within [`CONNECT_TIMEOUT`].
async fn connect_once(options: &PgConnectOptions, location: &str) -> Result<PgConnection, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(error)) => Err(match map_error(error) {
            StoreError::Other(message) | StoreError::Unavailable(message) => {
                StoreError::Unavailable(format!("cannot connect to postgres {location}: {message}"))
            }
            other => other,
        }),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect to postgres {location}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

impl Dialect for Postgres {
    const NEXT_POOLED: &'static str = sql::NEXT_POOLED_FOR_UPDATE;
    const LOCK_OWNER: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(hashtext($1))");

    fn map_error(error: sqlx::Error) -> StoreError {
        map_error(error)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

#[async_trait]
impl Backend for PostgresStore {
    type Db = Postgres;

    const SHARED: bool = true;

    fn read_pool(&self) -> &PgPool {
        &self.pool
    }

    /// A pool claim's select locks the row it returns until commit and passes over rows other
    /// claims have locked, so concurrent claims from any process each take a different sandbox
    /// at once instead of queueing on the oldest and finding it gone.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(map_error)
    }

    fn description(&self) -> String {
        format!("postgres {}", self.location)
    }

    /// One connection of the pool listens for the announcements of migration 0005's trigger
    /// and forwards them until the receiver is dropped.
    async fn change_feed(&self) -> Option<mpsc::Receiver<SandboxChange>> {
        let (sender, receiver) = mpsc::channel(CHANGE_BUFFER);
        tokio::spawn(forward_changes(self.pool.clone(), sender));
        Some(receiver)
    }

    /// The advisory lock belongs to a session, so it lives on a connection of its own, never a
    /// pooled one (which would hand the lock to whichever query borrowed it next). The server
    /// releases it when that session ends, however it ends: the lease dropped, the process
    /// killed, the connection cut.
    async fn take_lead(&self, cluster: &str) -> Result<Option<Lease>, StoreError> {
        let options = self.options.clone().application_name(LEADER_APPLICATION_NAME);
        let mut conn = connect_once(&options, &self.location).await?;
        let acquired = tokio::time::timeout(
            CONNECT_TIMEOUT,
            sqlx::query_scalar::<_, bool>(TRY_LEAD)
                .bind(cluster)
                .fetch_one(&mut conn),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "postgres {} did not answer the leadership query within {}s",
                self.location,
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(map_error)?;
        if !acquired {
            close_quietly(conn).await;
            return Ok(None);
        }
        let (stop, stopped) = oneshot::channel();
        let (lost_sender, lost) = watch::channel(None);
        tokio::spawn(keep_lease(conn, stopped, lost_sender));
        tracing::debug!(cluster, location = %self.location, "took leadership");
        // Dropping the lease drops `stop`, which tells the keeper to close the session.
        Ok(Some(Lease::held(Box::new(stop), Some(lost))))
    }
}

/// Keeps the session holding an advisory lock: checks it every [`LEASE_CHECK_INTERVAL`] and
/// reports the first failed check through `lost` (the server has ended, or will end, the
/// session and with it the lock). Closes the session as soon as `stop` fires or its sender
/// drops, even in the middle of a check.
async fn keep_lease(mut conn: PgConnection, mut stop: oneshot::Receiver<()>, lost: watch::Sender<Option<String>>) {
    let mut checks = tokio::time::interval(LEASE_CHECK_INTERVAL);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // `None`: the lease was given up (a send or the lease dropped, either way).
        let check = tokio::select! {
            _ = &mut stop => None,
            _ = checks.tick() => tokio::select! {
                _ = &mut stop => None,
                check = tokio::time::timeout(LEASE_CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&mut conn)) => Some(check),
            },
        };
        let reason = match check {
            None => {
                // An interrupted check leaves the connection mid-exchange; closing it anyway
                // ends the session, and a failed close means the server already let go.
                close_quietly(conn).await;
                return;
            }
            Some(Ok(Ok(_))) => continue,
            Some(Ok(Err(error))) => format!("lost the database connection: {error}"),
            Some(Err(_)) => format!(
                "lost the database connection: no answer within {}s",
                LEASE_CHECK_TIMEOUT.as_secs()
            ),
        };
        tracing::warn!(%reason, "leadership lost");
        lost.send_replace(Some(reason));
        // Dropped, not closed: the connection is broken or unresponsive.
        drop(conn);
        return;
    }
}

/// Ends a session politely, or, when the server does not answer within [`CONNECT_TIMEOUT`],
/// by dropping the socket; either way the server ends the session. A failure means it already
/// let go of it.
/// Listens on [`CHANGE_CHANNEL`] and forwards each announcement, listening again (on a fresh
/// connection) whenever the connection is lost; stops when `sender`'s receiver is gone or the
/// pool is closed.
async fn forward_changes(pool: PgPool, sender: mpsc::Sender<SandboxChange>) {
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANGE_CHANNEL).await?;
            loop {
                // `None`: the connection was lost (and announcements with it); the listener
                // connects again on the next call.
                let Some(notification) = listener.try_recv().await? else {
                    continue;
                };
                let Some(change) = parse_change(&notification) else {
                    tracing::debug!(
                        payload = notification.payload(),
                        "ignored a malformed change announcement"
                    );
                    continue;
                };
                match sender.try_send(change) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return Ok::<_, sqlx::Error>(()),
                }
            }
        };
        let outcome = tokio::select! {
            outcome = listening => outcome,
            () = sender.closed() => return,
        };
        match outcome {
            Ok(()) | Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::debug!(%error, "cannot listen for other processes' writes; listening again");
                tokio::time::sleep(CHANGE_RELISTEN_DELAY).await;
            }
        }
    }
}

/// `<id> <updated_at nanos>`, as the trigger writes it.
fn parse_change(notification: &PgNotification) -> Option<SandboxChange> {
    let (id, nanos) = notification.payload().split_once(' ')?;
    Some(SandboxChange {
        id: berth_core::SandboxId::parse(id)?,
        updated_at: chrono::DateTime::from_timestamp_nanos(nanos.parse().ok()?),
    })
}

async fn close_quietly(conn: PgConnection) {
    match tokio::time::timeout(CONNECT_TIMEOUT, conn.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "closing a postgres connection failed"),
        Err(_) => tracing::debug!("closing a postgres connection timed out; dropped it"),
    }
}

fn map_error(error: sqlx::Error) -> StoreError {
    sql::map_error(error, classify_database_error)
}

/// PostgreSQL's own errors by SQLSTATE class: the server unreachable, refusing or overloaded
/// is `Unavailable` (try again later), damaged data is `Corrupt`, the rest is a plain error.
fn classify_database_error(db: &dyn DatabaseError) -> StoreError {
    let code = db.code().unwrap_or_default();
    let class = code.get(..2).unwrap_or_default();
    match (class, code.as_ref()) {
        // connection exception, invalid authorization, insufficient resources, operator
        // intervention (shutdown, cannot connect now), system error, serialization failure
        // and deadlock (transient by definition), unknown database.
        ("08" | "28" | "53" | "57" | "58" | "40", _) | (_, "3D000") => StoreError::Unavailable(db.to_string()),
        // data_corrupted, index_corrupted.
        (_, "XX001" | "XX002") => StoreError::Corrupt(db.to_string()),
        _ => StoreError::Other(db.to_string()),
    }
}

fn migrate_error(location: &str, error: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    match error {
        M::Execute(error) | M::ExecuteMigration(error, _) => match map_error(error) {
            StoreError::Unavailable(message) => {
                StoreError::Unavailable(format!("cannot migrate postgres {location}: {message}"))
            }
            StoreError::Other(message) => StoreError::Other(format!("cannot migrate postgres {location}: {message}")),
            other => other,
        },
        M::VersionMissing(version) => StoreError::Other(format!(
            "postgres {location} was migrated by a newer berth (migration {version} is unknown to this one)"
        )),
        M::VersionMismatch(version) => StoreError::Corrupt(format!(
            "postgres {location}: applied migration {version} differs from this berth's"
        )),
        other => StoreError::Other(format!("cannot migrate postgres {location}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location_of(url: &str) -> String {
        location(&url.parse().expect("valid URL"))
    }

    #[test]
    fn location_names_host_port_and_database_only() {
        assert_eq!(
            location_of("postgres://berth:s3cret@db.internal:5433/sandboxes"),
            "db.internal:5433/sandboxes"
        );
        assert_eq!(location_of("postgres://alice:pw@[::1]/x"), "[::1]:5432/x");
        // Without a database, PostgreSQL uses the user's name.
        assert_eq!(location_of("postgres://alice:pw@127.0.0.1"), "127.0.0.1:5432/alice");
    }

    #[test]
    fn a_bad_url_error_does_not_quote_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let error = runtime
            .block_on(PostgresStore::connect("postgres://u:s3cret@host:notaport/db"))
            .expect_err("a bad port is refused");
        assert!(matches!(error, StoreError::Other(_)), "{error:?}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}

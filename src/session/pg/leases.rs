//! Leases (one driver per session) across hosts: a session-level advisory
//! lock, which the server releases when the holder's connection ends however
//! it ends, and a row naming the holder for whoever is refused.

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::super::lease::LeaseHolder;
use super::super::store::{SessionId, StoreError};
use super::reads::col;
use super::{Job, Pg};

/// The advisory lock key of a session: positive and below 2^62, so
/// `pg_locks` shows it back as `classid << 32 | objid`.
fn lock_key(session: &SessionId) -> i64 {
    let digest = Sha256::digest(session.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first).rem_euclid(1 << 62)
}

/// A held lease on the shared store: released when dropped.
pub(crate) struct PgLease {
    key: i64,
    jobs: std::sync::mpsc::Sender<Job>,
    held: Arc<Mutex<std::collections::HashSet<i64>>>,
}

impl std::fmt::Debug for PgLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLease").field("key", &self.key).finish()
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        let key = self.key;
        let job: Job = Box::new(move |c| {
            let _ = c.client.execute("SELECT pg_advisory_unlock($1)", &[&key]);
        });
        let _ = self.jobs.send(job);
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
}

impl Pg {
    /// Take the lease on `session` for `holder`, or say who has it.
    pub(crate) fn take_lease(
        &self,
        session: &SessionId,
        holder: &LeaseHolder,
    ) -> Result<Result<PgLease, Option<LeaseHolder>>, StoreError> {
        let key = lock_key(session);
        let sid = session.as_str().to_string();
        let mine = serde_json::to_string(holder)?;
        let here = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key);
        let got = if here {
            false
        } else {
            let sid = sid.clone();
            self.call(move |c| {
                let got: bool = c
                    .client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
                    .get(0);
                if got {
                    c.client.execute(
                        "INSERT INTO leases (session_id, lock_key, holder) VALUES ($1, $2, $3)
                         ON CONFLICT (session_id) DO UPDATE SET lock_key = excluded.lock_key,
                             holder = excluded.holder",
                        &[&sid, &key, &mine],
                    )?;
                }
                Ok(got)
            })?
        };
        if !got {
            let rows = self.rows(
                "SELECT holder FROM leases WHERE session_id = $1",
                vec![Box::new(sid)],
            )?;
            let by = match rows.first() {
                Some(r) => serde_json::from_str(&col::<String>(r, 0)?).ok(),
                None => None,
            };
            return Ok(Err(by));
        }
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Ok(PgLease {
            key,
            jobs,
            held: Arc::clone(&self.held),
        }))
    }

    /// Holders whose lock is held now, on any host.
    pub(crate) fn live_holders(&self) -> Result<Vec<LeaseHolder>, StoreError> {
        let rows = self.rows(
            "SELECT l.holder FROM pg_locks k
             JOIN leases l ON l.lock_key = ((k.classid::bigint << 32) | k.objid::bigint)
             WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 1
               AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            vec![],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| col::<String>(r, 0).ok())
            .filter_map(|h| serde_json::from_str(&h).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_positive_below_two_to_the_62() {
        for _ in 0..100 {
            let k = lock_key(&SessionId::generate());
            assert!((0..(1i64 << 62)).contains(&k), "{k}");
        }
    }
}

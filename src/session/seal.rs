//! Proving the log whole, not only self-consistent. The hash chain catches
//! a record changed or removed in the middle, but not a log cut short, a
//! chain recomputed after a rewrite, an emptied or swapped file, or a
//! forged "pruned" marker. So the newest head (seq, hash) is signed with
//! HMAC-SHA-256 under a key kept outside the data directory (in the OS
//! keyring, or a 0600 file in the config directory on a machine without
//! one), in the same transaction as the records it covers,
//! and also written to an anchor file beside the database that can be
//! printed (`opsbot audit anchor`) for another system to keep. Whoever
//! holds the key can still rewrite history; an anchor kept elsewhere
//! catches that.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use rusqlite::{OptionalExtension, params};
use sha2::Sha256;

use super::store::{Store, StoreError};

/// The key's file name in the config directory.
pub const KEY_FILE: &str = "audit.key";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "cannot read the audit key {path}: {reason}; it signs the log's newest record — restore it from a backup, or move it aside to start a new key (verification of older heads then fails)"
    )]
    Read { path: PathBuf, reason: String },
    #[error(
        "cannot create the audit key {path}: {reason}; check that the config directory is writable"
    )]
    Create { path: PathBuf, reason: String },
}

/// The signing key.
#[derive(Clone)]
pub struct Seal {
    key: [u8; 32],
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal([key])")
    }
}

/// The keyring account of the key for the installation configured in
/// `config_dir` (several installations may share one keyring).
fn keyring_account(config_dir: &Path) -> String {
    let dir = config_dir
        .canonicalize()
        .unwrap_or_else(|_| config_dir.to_path_buf());
    let digest = <Sha256 as sha2::Digest>::digest(dir.to_string_lossy().as_bytes());
    format!("audit-key:{}", &crate::text::hex(&digest)[..16])
}

impl Seal {
    /// The key for `config_dir`, if there is one: its key file, else its
    /// entry in the OS keyring.
    pub fn load(config_dir: &Path) -> Result<Option<Self>, SealError> {
        // The file first: asking the keyring whether it exists is a round
        // trip to its service, not to be paid when the file answers.
        if let Some(seal) = Self::load_file(config_dir)? {
            return Ok(Some(seal));
        }
        Self::load_in(config_dir, crate::secrets::keyring_available())
    }

    /// As `load`, looking in the keyring only when told it exists.
    pub fn load_in(config_dir: &Path, keyring: bool) -> Result<Option<Self>, SealError> {
        if let Some(seal) = Self::load_file(config_dir)? {
            return Ok(Some(seal));
        }
        if !keyring {
            return Ok(None);
        }
        let account = keyring_account(config_dir);
        let read = |reason: String| SealError::Read {
            path: PathBuf::from(format!("OS keyring entry opsbot/{account}")),
            reason,
        };
        match crate::secrets::read_key(&account) {
            Ok(None) => Ok(None),
            Ok(Some(text)) => Self::from_hex(&text)
                .map(Some)
                .ok_or_else(|| read("it is not 64 hexadecimal characters".into())),
            Err(e) => Err(read(e.to_string())),
        }
    }

    /// Where the key for `config_dir` is (or would be) kept, for messages.
    pub fn place(config_dir: &Path) -> String {
        let file = config_dir.join(KEY_FILE);
        if file.exists() || !crate::secrets::keyring_available() {
            file.display().to_string()
        } else {
            format!("the OS keyring (opsbot/{})", keyring_account(config_dir))
        }
    }

    fn from_hex(text: &str) -> Option<Self> {
        let bytes = unhex(text.trim()).filter(|b| b.len() == 32)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Some(Self { key })
    }

    fn load_file(config_dir: &Path) -> Result<Option<Self>, SealError> {
        let path = config_dir.join(KEY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SealError::Read {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        match Self::from_hex(&text) {
            Some(seal) => Ok(Some(seal)),
            None => Err(SealError::Read {
                path,
                reason: "it is not 64 hexadecimal characters".into(),
            }),
        }
    }

    /// The key for `config_dir`, made (random) when there is none: in the
    /// OS keyring where this machine has one, else in a 0600 file in the
    /// config directory; true when it was made now.
    pub fn load_or_create(config_dir: &Path) -> Result<(Self, bool), SealError> {
        if let Some(seal) = Self::load_file(config_dir)? {
            return Ok((seal, false));
        }
        Self::load_or_create_in(config_dir, crate::secrets::keyring_available())
    }

    /// As `load_or_create`, using the keyring only when told it exists.
    pub fn load_or_create_in(config_dir: &Path, keyring: bool) -> Result<(Self, bool), SealError> {
        if let Some(seal) = Self::load_in(config_dir, keyring)? {
            return Ok((seal, false));
        }
        let mut key = [0u8; 32];
        if keyring {
            let account = keyring_account(config_dir);
            getrandom::fill(&mut key).map_err(|e| SealError::Create {
                path: PathBuf::from(format!("OS keyring entry opsbot/{account}")),
                reason: e.to_string(),
            })?;
            match crate::secrets::store_key(&account, &crate::text::hex(&key)) {
                Ok(()) => return Ok((Self { key }, true)),
                // A keyring that refuses (locked, no service after all):
                // the file is the fallback, as on a machine without one.
                Err(e) => tracing::warn!(
                    "cannot keep the audit key in the OS keyring ({e}); keeping it in {}",
                    config_dir.join(KEY_FILE).display()
                ),
            }
        }
        let path = config_dir.join(KEY_FILE);
        let create = |reason: String| SealError::Create {
            path: path.clone(),
            reason,
        };
        getrandom::fill(&mut key).map_err(|e| create(e.to_string()))?;
        std::fs::create_dir_all(config_dir).map_err(|e| create(e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut f) => {
                f.write_all(crate::text::hex(&key).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| create(e.to_string()))?;
                Ok((Self { key }, true))
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_file(config_dir)?
                .map(|s| (s, false))
                .ok_or_else(|| create("it appeared and vanished".into())),
            Err(e) => Err(create(e.to_string())),
        }
    }

    /// The MAC of a head or a pruned marker: what it is, its seq and hash.
    pub fn mac(&self, what: &str, seq: i64, hash: &str) -> String {
        crate::text::hex(&self.hmac(what, seq, hash).finalize().into_bytes())
    }

    /// Whether `mac` is this key's MAC of them (compared in constant time).
    pub fn check(&self, what: &str, seq: i64, hash: &str, mac: &str) -> bool {
        unhex(mac).is_some_and(|m| self.hmac(what, seq, hash).verify_slice(&m).is_ok())
    }

    fn hmac(&self, what: &str, seq: i64, hash: &str) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC; this cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(format!("opsbot-audit-v1\0{what}\0{seq}\0{hash}").as_bytes());
        m
    }
}

/// A signed head: the newest record's seq and hash, and their MAC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub mac: String,
}

impl Head {
    /// `SEQ:HASH`, as printed for another system to keep.
    pub fn anchor(&self) -> String {
        format!("{}:{}", self.seq, self.hash)
    }

    fn line(&self) -> String {
        format!("{}:{}:{}\n", self.seq, self.hash, self.mac)
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().splitn(3, ':');
        let seq = parts.next()?.parse().ok()?;
        let hash = parts.next()?.to_string();
        let mac = parts.next().unwrap_or_default().to_string();
        Some(Self { seq, hash, mac })
    }
}

/// `SEQ:HASH` given on the command line.
pub fn parse_anchor(text: &str) -> Option<(i64, String)> {
    let (seq, hash) = text.trim().split_once(':')?;
    let hash = hash.trim();
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Some((seq.trim().parse().ok()?, hash.to_ascii_lowercase())))
        .flatten()
}

/// Where the anchor file of the database at `db` is.
pub fn anchor_path(db: &Path) -> PathBuf {
    db.with_extension("anchor")
}

/// Sign the newest record inside the transaction that wrote it.
pub(super) fn sign_head(
    tx: &rusqlite::Transaction<'_>,
    seal: &Seal,
    seq: i64,
    hash: &str,
) -> Result<Head, rusqlite::Error> {
    let head = Head {
        seq,
        hash: hash.to_string(),
        mac: seal.mac("head", seq, hash),
    };
    tx.prepare_cached(
        "INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET seq = ?1, hash = ?2, mac = ?3",
    )?
    .execute(params![head.seq, head.hash, head.mac])?;
    Ok(head)
}

/// How long the anchor writer gathers heads before it writes the newest.
/// On ext4 a rename over a file flushes the new file's data, so writing on
/// every commit put a disk write beside each governed call.
const ANCHOR_PACE: std::time::Duration = std::time::Duration::from_millis(50);

/// Writes the anchor file off the append path: a commit hands over its
/// signed head and goes on; a thread of its own writes the newest head it
/// has, at most once per `ANCHOR_PACE` (so it may lag a few commits, which
/// verification allows: the signed head in the database is always
/// current). The last head is written when the store closes.
pub(super) struct AnchorWriter {
    /// The first head of this store's life is written at once, so a log
    /// always has its anchor from its first commit on.
    first: AtomicBool,
    latest: Arc<Mutex<Option<Head>>>,
    /// The thread waits for a head: only then does a commit wake it (a
    /// wake-up is a system call, and a thread switch on a busy machine).
    idle: Arc<AtomicBool>,
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnchorWriter {
    pub(super) fn start(db: &Path) -> Self {
        let latest = Arc::new(Mutex::new(None::<Head>));
        let idle = Arc::new(AtomicBool::new(false));
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let (db, mine, idling) = (db.to_path_buf(), Arc::clone(&latest), Arc::clone(&idle));
        let thread = std::thread::Builder::new()
            .name("opsbot-anchor".into())
            .spawn(move || {
                let take = || mine.lock().ok().and_then(|mut h| h.take());
                let waiting = || mine.lock().is_ok_and(|h| h.is_some());
                loop {
                    idling.store(true, Ordering::SeqCst);
                    if !waiting() && woken.recv().is_err() {
                        break;
                    }
                    idling.store(false, Ordering::SeqCst);
                    // Heads that land within the pace go in one write: a
                    // write and rename costs the disk more than a commit.
                    match woken.recv_timeout(ANCHOR_PACE) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if let Some(head) = take() {
                        write_anchor(&db, &head);
                    }
                }
                if let Some(head) = take() {
                    write_anchor(&db, &head);
                }
            });
        let (wake, thread) = match thread {
            Ok(t) => (Some(wake), Some(t)),
            Err(e) => {
                tracing::warn!("cannot start the anchor writer ({e}); anchors are written at once");
                (None, None)
            }
        };
        Self {
            first: AtomicBool::new(true),
            latest,
            idle,
            wake,
            thread,
        }
    }

    /// Hand over the newest signed head (called under the writer's lock,
    /// so heads arrive in order).
    pub(super) fn note(&self, db: &Path, head: Head) {
        let first = self.first.swap(false, Ordering::AcqRel);
        let Some(wake) = self.wake.as_ref().filter(|_| !first) else {
            return write_anchor(db, &head);
        };
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(head);
        }
        if self.idle.swap(false, Ordering::SeqCst) {
            let _ = wake.try_send(());
        }
    }
}

impl Drop for AnchorWriter {
    fn drop(&mut self) {
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Write the anchor file (whole, then renamed into place). Best effort: a
/// failure is logged, and the signed head in the database still stands.
pub(super) fn write_anchor(db: &Path, head: &Head) {
    let path = anchor_path(db);
    let tmp = path.with_extension("anchor.tmp");
    let result = std::fs::write(&tmp, head.line()).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        tracing::warn!("cannot write the audit anchor {}: {e}", path.display());
    }
}

/// What checking the signatures found; empty problems mean proven whole
/// (as far as this key and anchor can tell).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Proof {
    /// A key was found to check with.
    pub sealed: bool,
    /// The newest signed head, when it checks out.
    pub head: Option<Head>,
    /// An anchor given from outside, and whether it held.
    pub external: Option<String>,
    pub problems: Vec<String>,
}

impl Store {
    /// Sign with `seal` from now on. A key made just now adopts the log as
    /// it is (trust on first use): its pruned markers and newest record
    /// are signed, so a log from before signing verifies from here on.
    pub fn adopt_seal(&self, seal: Seal, fresh: bool) -> Result<(), StoreError> {
        // A shared store is written by many installations, each with its
        // own key: no one key can sign its head. Its chain is verified as
        // a chain, and anchors taken from it (`audit verify --anchor`)
        // prove it complete up to them.
        if self.pg().is_some() {
            return Ok(());
        }
        if fresh && !self.is_read_only() {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let markers: Vec<(i64, String)> = tx
                .prepare("SELECT upto_seq, last_hash FROM pruned WHERE mac IS NULL")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (upto, hash) in markers {
                tx.execute(
                    "UPDATE pruned SET mac = ?2 WHERE upto_seq = ?1",
                    params![upto, seal.mac("pruned", upto, &hash)],
                )?;
            }
            let pins: Vec<(String, String, String)> = tx
                .prepare("SELECT tool, def_hash, pinned_by FROM pins WHERE mac IS NULL")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (tool, hash, by) in pins {
                let (what, signed) = super::derived::pin_signed(&tool, &hash, &by);
                tx.execute(
                    "UPDATE pins SET mac = ?2 WHERE tool = ?1",
                    params![tool, seal.mac(&what, 0, &signed)],
                )?;
            }
            let tip: Option<(i64, String)> = tx
                .query_row(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let head = match tip {
                Some((seq, hash)) => Some(sign_head(&tx, &seal, seq, &hash)?),
                None => None,
            };
            tx.commit()?;
            if let Some(head) = head {
                write_anchor(self.path(), &head);
            }
        }
        self.set_seal(seal);
        Ok(())
    }

    /// The signed head in the database.
    pub fn signed_head(&self) -> Result<Option<Head>, StoreError> {
        if self.pg().is_some() {
            return Ok(None);
        }
        Ok(self
            .conn()
            .query_row(
                "SELECT seq, hash, mac FROM audit_head WHERE id = 1",
                [],
                |r| {
                    Ok(Head {
                        seq: r.get(0)?,
                        hash: r.get(1)?,
                        mac: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn hash_at(&self, seq: i64) -> Result<Option<String>, StoreError> {
        if let Some(pg) = self.pg() {
            let rows = pg.rows(
                "SELECT hash FROM events WHERE seq = $1",
                vec![Box::new(seq)],
            )?;
            return rows.first().map(|r| super::pg::col(r, 0)).transpose();
        }
        Ok(self
            .conn()
            .query_row(
                "SELECT hash FROM events WHERE seq = ?1",
                params![seq],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Check the chain's tip (`tip`, `tip_hash`, after the chain itself was
    /// walked) against the signed head, the anchor file, every pruned
    /// marker and an anchor from outside.
    pub fn prove(
        &self,
        seal: Option<&Seal>,
        tip: i64,
        tip_hash: &str,
        external: Option<(i64, String)>,
    ) -> Result<Proof, StoreError> {
        let seal = seal.filter(|_| self.pg().is_none());
        let mut proof = Proof {
            sealed: seal.is_some(),
            ..Proof::default()
        };
        proof.problems.extend(self.check_sessions()?);
        if let Some(seal) = seal {
            self.prove_sealed(seal, tip, tip_hash, &mut proof)?;
        }
        if let Some((seq, hash)) = external {
            let held = self.holds(seq, &hash, tip)?;
            proof.external = Some(format!("{seq}:{hash}"));
            if let Some(problem) = held {
                proof.problems.push(format!(
                    "the anchor {seq}:{} given: {problem}",
                    crate::text::short(&hash)
                ));
            }
        }
        Ok(proof)
    }

    fn prove_sealed(
        &self,
        seal: &Seal,
        tip: i64,
        tip_hash: &str,
        proof: &mut Proof,
    ) -> Result<(), StoreError> {
        let problems = &mut proof.problems;
        match self.signed_head()? {
            None if tip > 0 => problems.push(
                "no signed head: the newest records were not written by opsbot with this key, or the signature was removed".into(),
            ),
            None => {}
            Some(h) if !seal.check("head", h.seq, &h.hash, &h.mac) => problems.push(format!(
                "the signed head (#{}) was not signed with this key: the log was rewritten, or it is another installation's file",
                h.seq
            )),
            Some(h) if h.seq > tip => problems.push(format!(
                "records #{} to #{} are missing: opsbot signed #{} as the newest, and the log now ends at #{tip}",
                tip + 1,
                h.seq,
                h.seq
            )),
            Some(h) if h.seq < tip => problems.push(format!(
                "records #{} to #{tip} are not covered by opsbot's signature (written without its key)",
                h.seq + 1
            )),
            Some(h) if h.hash != tip_hash => problems.push(format!(
                "record #{} is not the one opsbot signed: the chain was recomputed after a rewrite",
                h.seq
            )),
            Some(h) => proof.head = Some(h),
        }
        let anchor = anchor_path(self.path());
        match std::fs::read_to_string(&anchor) {
            Ok(text) => match Head::parse(&text) {
                Some(a) if seal.check("head", a.seq, &a.hash, &a.mac) => {
                    if let Some(problem) = self.holds(a.seq, &a.hash, tip)? {
                        problems.push(format!(
                            "the anchor file {} (#{}): {problem}",
                            anchor.display(),
                            a.seq
                        ));
                    }
                }
                _ => problems.push(format!(
                    "the anchor file {} was not written by opsbot with this key",
                    anchor.display()
                )),
            },
            // Without an anchor file the signed head alone stands (it is
            // written in the commit; the file follows it): only a log
            // whose head is not proven is reported for lacking one too.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if tip > 0 && proof.head.is_none() {
                    problems.push(format!(
                        "the anchor file {} is missing as well",
                        anchor.display()
                    ));
                }
            }
            Err(e) => problems.push(format!("cannot read the anchor file: {e}")),
        }
        problems.extend(self.check_pins(seal)?);
        for (upto, last_hash, mac) in self.pruned_markers()? {
            if !mac
                .as_deref()
                .is_some_and(|m| seal.check("pruned", upto, &last_hash, m))
            {
                problems.push(format!(
                    "the pruned marker up to #{upto} was not written by opsbot: records before it may have been removed"
                ));
            }
        }
        Ok(())
    }

    /// Whether the log holds record `seq` with `hash` (None), or what is
    /// wrong.
    fn holds(&self, seq: i64, hash: &str, tip: i64) -> Result<Option<String>, StoreError> {
        if seq > tip {
            return Ok(Some(format!(
                "records #{} to #{seq} are missing (the log ends at #{tip})",
                tip + 1
            )));
        }
        if let Some(found) = self.hash_at(seq)? {
            return Ok((found != hash).then(|| {
                format!("record #{seq} has another hash: the log was rewritten or replaced")
            }));
        }
        let pruned_at = self
            .pruned_markers()?
            .into_iter()
            .find(|(upto, _, _)| *upto == seq);
        Ok(match pruned_at {
            Some((_, last, _)) if last == hash => None,
            Some(_) => Some(format!("record #{seq} was pruned with another hash")),
            None if seq == 0 => None,
            None => Some(format!(
                "record #{seq} is not in the log (pruned by retention, or removed)"
            )),
        })
    }

    /// Every pruned marker with its MAC (none in a log from before markers
    /// were signed, opened read-only so the column was never added).
    fn pruned_markers(&self) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .rows(
                    "SELECT upto_seq, last_hash, mac FROM pruned ORDER BY upto_seq",
                    vec![],
                )?
                .iter()
                .map(|r| {
                    Ok((
                        super::pg::col(r, 0)?,
                        super::pg::col(r, 1)?,
                        super::pg::col(r, 2)?,
                    ))
                })
                .collect();
        }
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT upto_seq, last_hash, mac FROM pruned ORDER BY upto_seq")
            .or_else(|_| {
                conn.prepare("SELECT upto_seq, last_hash, NULL FROM pruned ORDER BY upto_seq")
            })?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_checks_only_what_it_signed_and_under_its_key() {
        let dir = tempfile::tempdir().expect("dir");
        let (seal, fresh) = Seal::load_or_create_in(dir.path(), false).expect("key");
        assert!(fresh);
        let (again, fresh) = Seal::load_or_create_in(dir.path(), false).expect("same key");
        assert!(!fresh);
        let mac = seal.mac("head", 7, "abc");
        assert!(again.check("head", 7, "abc", &mac));
        assert!(!seal.check("head", 8, "abc", &mac));
        assert!(!seal.check("pruned", 7, "abc", &mac));
        let other = tempfile::tempdir().expect("dir");
        let (stranger, _) = Seal::load_or_create_in(other.path(), false).expect("key");
        assert!(!stranger.check("head", 7, "abc", &mac));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            parse_anchor(&format!("12:{}", "A".repeat(64))),
            Some((12, "a".repeat(64)))
        );
        assert_eq!(parse_anchor("12:abc"), None);
    }

    #[test]
    fn where_a_keyring_exists_the_key_lives_there_one_per_installation() {
        keyring_core::set_default_store(keyring_core::mock::Store::new().expect("mock store"));
        let dir = tempfile::tempdir().expect("dir");
        let (seal, fresh) = Seal::load_or_create_in(dir.path(), true).expect("key");
        assert!(fresh);
        assert!(
            !dir.path().join(KEY_FILE).exists(),
            "no file beside a keyring"
        );
        let (again, fresh) = Seal::load_or_create_in(dir.path(), true).expect("same key");
        assert!(!fresh);
        let mac = seal.mac("head", 1, "h");
        assert!(again.check("head", 1, "h", &mac));
        let other = tempfile::tempdir().expect("dir");
        let (stranger, fresh) = Seal::load_or_create_in(other.path(), true).expect("key");
        assert!(fresh);
        assert!(!stranger.check("head", 1, "h", &mac));
        // A key file made before (or without) the keyring keeps being used.
        let old = tempfile::tempdir().expect("dir");
        let (filed, _) = Seal::load_or_create_in(old.path(), false).expect("file key");
        let (found, fresh) = Seal::load_or_create_in(old.path(), true).expect("file key");
        assert!(!fresh);
        assert!(found.check("head", 2, "h", &filed.mac("head", 2, "h")));
    }
}

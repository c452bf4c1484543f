//! pgwire users: names, the `ADMIN` attribute and SCRAM-SHA-256 secrets.
//!
//! The model is one role attribute: an `ADMIN` user may run every statement; any other user
//! is read-only — it may query views, sources' system relations and `weir.*`, `SET` and
//! `SHOW`, and gets 42501 for DDL (see [`needs_admin`]). `users.json` in the data dir keeps
//! them (atomic writes, mode 0600), so they survive restarts and `kill -9`; without a data
//! dir they live in memory.
//!
//! Passwords are never stored: each user keeps a random 16-byte salt, the PBKDF2-HMAC-SHA256
//! iteration count (4096, as PostgreSQL) and the salted password SCRAM-SHA-256 derives its
//! keys from. The pgwire crate verifies the client's proof from that salted password, so it
//! is as good as the password for logging in over SCRAM: the file is readable by its owner
//! only (SECURITY.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::catalog::write_atomic;
use crate::dialect::UserStatement;
use crate::error::{Result, SqlError};
use crate::Outcome;

/// PBKDF2 iterations for new secrets (PostgreSQL's `scram_iterations` default).
pub const ITERATIONS: u32 = 4096;

/// One user as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// May run DDL and manage users.
    pub admin: bool,
    /// Hex of the SCRAM salt.
    salt: String,
    /// Hex of PBKDF2-HMAC-SHA256(password, salt, iterations).
    salted_password: String,
    iterations: u32,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

impl User {
    /// The SCRAM salt and salted password.
    pub fn scram_secret(&self) -> (Vec<u8>, Vec<u8>, u32) {
        (
            from_hex(&self.salt),
            from_hex(&self.salted_password),
            self.iterations,
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    users: Vec<User>,
}

/// The users, persisted in `users.json`.
#[derive(Debug)]
pub struct Users {
    path: Option<PathBuf>,
    users: RwLock<BTreeMap<String, User>>,
}

impl Users {
    /// Reads `<dir>/users.json` (none yet: no users).
    pub fn open(dir: Option<&Path>) -> Result<Self> {
        let path = dir.map(|d| d.join("users.json"));
        let mut users = BTreeMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let file: UsersFile = serde_json::from_slice(&bytes).map_err(|e| {
                        SqlError::Io(format!("{} is not a users file: {e}", p.display()))
                    })?;
                    for u in file.users {
                        users.insert(u.name.clone(), u);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SqlError::Io(format!("{}: {e}", p.display()))),
            }
        }
        Ok(Self {
            path,
            users: RwLock::new(users),
        })
    }

    /// Whether no user exists (pgwire then trusts every client, on loopback only).
    pub fn is_empty(&self) -> bool {
        self.users.read().is_empty()
    }

    pub fn get(&self, name: &str) -> Option<User> {
        self.users.read().get(name).cloned()
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<User> {
        self.users.read().values().cloned().collect()
    }

    /// `CREATE USER`: 42710 if the name is taken.
    pub fn create(&self, name: &str, password: &str, admin: bool) -> Result<()> {
        check_password(password)?;
        let mut users = self.users.write();
        if users.contains_key(name) {
            return Err(SqlError::DuplicateRole(format!(
                "role \"{name}\" already exists"
            )));
        }
        let mut next = users.clone();
        next.insert(name.to_string(), new_user(name, password, admin));
        self.save(&next)?;
        *users = next;
        Ok(())
    }

    /// `ALTER USER`: a new password and/or attribute; 42704 if there is no such user.
    pub fn alter(&self, name: &str, password: Option<&str>, admin: Option<bool>) -> Result<()> {
        if let Some(p) = password {
            check_password(p)?;
        }
        let mut users = self.users.write();
        let Some(old) = users.get(name) else {
            return Err(undefined(name));
        };
        let mut user = match password {
            Some(p) => User {
                created_at_ms: old.created_at_ms,
                ..new_user(name, p, old.admin)
            },
            None => old.clone(),
        };
        if let Some(a) = admin {
            user.admin = a;
        }
        let mut next = users.clone();
        next.insert(name.to_string(), user);
        self.save(&next)?;
        *users = next;
        Ok(())
    }

    /// `DROP USER`: 42704 if there is no such user (unless `if_exists`).
    pub fn drop_user(&self, name: &str, if_exists: bool) -> Result<()> {
        let mut users = self.users.write();
        if !users.contains_key(name) {
            return if if_exists {
                Ok(())
            } else {
                Err(undefined(name))
            };
        }
        let mut next = users.clone();
        next.remove(name);
        self.save(&next)?;
        *users = next;
        Ok(())
    }

    /// Makes `name` an admin with `password` (the server's `admin_password`), creating it or
    /// replacing its password when it differs.
    pub fn ensure_admin(&self, name: &str, password: &str) -> Result<()> {
        match self.get(name) {
            Some(u) if u.admin && verify(&u, password) => Ok(()),
            Some(_) => self.alter(name, Some(password), Some(true)),
            None => self.create(name, password, true),
        }
    }

    /// Refuses to drop or demote the last admin while other users exist: nobody could
    /// manage users any more, and without users every client would be trusted again.
    fn check_not_last_admin(&self, name: &str, what: &str) -> Result<()> {
        let users = self.users.read();
        let is_admin = users.get(name).is_some_and(|u| u.admin);
        let admins = users.values().filter(|u| u.admin).count();
        if is_admin && admins == 1 && users.len() > 1 {
            return Err(SqlError::ObjectInUse(format!(
                "cannot {what} \"{name}\", the last ADMIN user: create another admin first"
            )));
        }
        Ok(())
    }

    fn save(&self, users: &BTreeMap<String, User>) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = UsersFile {
            users: users.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| SqlError::Internal(format!("users file: {e}")))?;
        write_atomic(path, &bytes).map_err(|e| SqlError::Io(format!("{}: {e}", path.display())))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| SqlError::Io(format!("{}: {e}", path.display())))
    }
}

/// Runs a user statement (the caller has checked the session may).
pub fn execute(users: &Users, statement: UserStatement) -> Result<Outcome> {
    let tag = match statement {
        UserStatement::Create {
            name,
            password,
            admin,
        } => {
            users.create(&name, &password, admin)?;
            "CREATE ROLE"
        }
        UserStatement::Alter {
            name,
            password,
            admin,
        } => {
            if admin == Some(false) {
                users.check_not_last_admin(&name, "take ADMIN from")?;
            }
            users.alter(&name, password.as_deref(), admin)?;
            "ALTER ROLE"
        }
        UserStatement::Drop { name, if_exists } => {
            users.check_not_last_admin(&name, "drop")?;
            users.drop_user(&name, if_exists)?;
            "DROP ROLE"
        }
    };
    Ok(Outcome::Command(tag.into()))
}

/// `weir.users`: name, admin, created_at — never a secret.
pub fn batch(
    users: &Users,
) -> datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch> {
    let list = users.list();
    crate::system::Columns::new()
        .text("name", list.iter().map(|u| Some(u.name.as_str())))
        .bool("admin", list.iter().map(|u| Some(u.admin)))
        .time_ns(
            "created_at",
            list.iter().map(|u| Some(u.created_at_ms * 1_000_000)),
        )
        .finish()
}

fn undefined(name: &str) -> SqlError {
    SqlError::UndefinedRole(format!("role \"{name}\" does not exist"))
}

fn check_password(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(SqlError::InvalidParameter(
            "a password must not be empty".into(),
        ));
    }
    Ok(())
}

fn new_user(name: &str, password: &str, admin: bool) -> User {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).expect("the operating system's random source");
    User {
        name: name.to_string(),
        admin,
        salt: to_hex(&salt),
        salted_password: to_hex(&salted_password(password.as_bytes(), &salt, ITERATIONS)),
        iterations: ITERATIONS,
        created_at_ms: chrono::Utc::now().timestamp_millis(),
    }
}

/// Whether `password` is `user`'s (constant time over the salted passwords).
pub fn verify(user: &User, password: &str) -> bool {
    let (salt, stored, iterations) = user.scram_secret();
    let computed = salted_password(password.as_bytes(), &salt, iterations);
    computed.len() == stored.len()
        && computed
            .iter()
            .zip(&stored)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// PBKDF2-HMAC-SHA256 with one output block: SCRAM's `Hi(password, salt, i)`.
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mac = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes any key length");
    let mut u = {
        let mut m = mac.clone();
        m.update(salt);
        m.update(&1u32.to_be_bytes());
        m.finalize().into_bytes()
    };
    let mut out = u;
    for _ in 1..iterations {
        let mut m = mac.clone();
        m.update(&u);
        u = m.finalize().into_bytes();
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out.to_vec()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_7677_example() {
        // RFC 7677's SCRAM-SHA-256 example: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
        // 4096 iterations; the expected bytes are Python's hashlib.pbkdf2_hmac('sha256', …).
        let salt = [
            0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36,
            0xfa, 0x81,
        ];
        let salted = salted_password(b"pencil", &salt, 4096);
        assert_eq!(
            to_hex(&salted),
            "c4a49510323ab4f952cac1fa99441939e78ea74d6be81ddf7096e87513dc615d"
        );
    }

    #[test]
    fn users_persist_with_secrets_only() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(Some(dir.path())).unwrap();
        assert!(users.is_empty());
        users.create("grafana", "s3cret", false).unwrap();
        users.create("ops", "hunter2", true).unwrap();
        assert_eq!(
            users.create("ops", "x", true).unwrap_err().sqlstate(),
            "42710"
        );
        users.alter("grafana", Some("n3w"), None).unwrap();
        assert_eq!(
            users
                .alter("nobody", None, Some(true))
                .unwrap_err()
                .sqlstate(),
            "42704"
        );
        let text = std::fs::read_to_string(dir.path().join("users.json")).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("n3w") && !text.contains("hunter2"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("users.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let again = Users::open(Some(dir.path())).unwrap();
        let grafana = again.get("grafana").unwrap();
        assert!(!grafana.admin);
        assert!(verify(&grafana, "n3w"));
        assert!(!verify(&grafana, "s3cret"));
        assert!(again.get("ops").unwrap().admin);
        again.drop_user("ops", false).unwrap();
        again.drop_user("ops", true).unwrap();
        assert!(again.drop_user("ops", false).is_err());
        again.ensure_admin("weir", "pw").unwrap();
        assert!(verify(&again.get("weir").unwrap(), "pw"));
        again.ensure_admin("weir", "pw2").unwrap();
        assert!(verify(&again.get("weir").unwrap(), "pw2"));
    }
}

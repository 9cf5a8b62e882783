//! Connector secrets (webhook signing keys, webhook URLs that carry a
//! token, Redis passwords): read once at config time from a file or an
//! environment variable the config names — never written inline — and held
//! in a [`Secret`] whose `Debug` hides it, so it cannot reach a log line,
//! an API answer or the audit log.

use std::path::Path;

/// Largest secret file read: secrets are keys, passwords and URLs.
const SECRET_FILE_MAX: u64 = 4096;

/// A secret string. `Debug` prints `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests; the config reads real ones).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads the secret `what` from `file` or the environment variable `env`
/// (at most one may be set; `None` when neither is). Surrounding whitespace
/// is trimmed. Errors name the setting, never the value.
pub(crate) fn read(
    what: &str,
    file: Option<&Path>,
    var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    let value = match (file, var) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(format!("set only one of `{what}_file` and `{what}_env`"));
        }
        (Some(path), None) => {
            let shown = path.display();
            let meta =
                std::fs::metadata(path).map_err(|e| format!("`{what}_file` {shown}: {e}"))?;
            if meta.len() > SECRET_FILE_MAX {
                return Err(format!(
                    "`{what}_file` {shown} is {} bytes; the limit is {SECRET_FILE_MAX}",
                    meta.len()
                ));
            }
            std::fs::read_to_string(path).map_err(|e| format!("`{what}_file` {shown}: {e}"))?
        }
        (None, Some(var)) => env(var).ok_or_else(|| format!("`{what}_env`: {var} is not set"))?,
    };
    let value = value.trim();
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(format!(
            "the {what} is empty or contains control characters"
        ));
    }
    Ok(Some(Secret(value.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_file_or_env_never_shown() {
        let env = |v: &str| (v == "PW").then(|| " hunter2\n".to_string());
        let s = read("password", None, Some("PW"), &env).unwrap().unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(read("password", None, None, &env).unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "fromfile\n").unwrap();
        let s = read("password", Some(&path), None, &env).unwrap().unwrap();
        assert_eq!(s.expose(), "fromfile");

        let err = read("password", Some(&path), Some("PW"), &env).unwrap_err();
        assert!(err.contains("only one"), "{err}");
        let err = read("password", None, Some("NOPE"), &env).unwrap_err();
        assert!(err.contains("NOPE is not set"), "{err}");
        let err = read("secret", Some(Path::new("/no/such")), None, &env).unwrap_err();
        assert!(err.contains("`secret_file` /no/such"), "{err}");
        let bad = |_: &str| Some("a\u{7}b".to_string());
        let err = read("secret", None, Some("X"), &bad).unwrap_err();
        assert!(!err.contains("a\u{7}b"), "{err}");
    }
}

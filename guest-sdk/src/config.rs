//! The handler's configuration: JSON set by the operator at deploy time and
//! updatable without a redeploy.

use serde::de::DeserializeOwned;

use crate::{HandlerError, sys};

/// The configuration as JSON text (`{}` when none was given).
pub fn config_json() -> String {
    sys::config_get()
}

/// Deserializes the configuration.
///
/// A configuration that does not fit `T` is a fatal error: retrying will not
/// fix it, the operator must. The message says what is wrong.
///
/// ```
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config {
///     reply: String,
/// }
///
/// let mut host = hookbox_sdk::testing::TestHost::new();
/// host.set_config_json(r#"{"reply": "on it"}"#);
/// let config: Config = host.within("acme", || hookbox_sdk::config()).unwrap();
/// assert_eq!(config.reply, "on it");
/// ```
pub fn config<T: DeserializeOwned>() -> Result<T, HandlerError> {
    serde_json::from_str(&config_json())
        .map_err(|e| HandlerError::fatal(format!("invalid handler config: {e}")))
}

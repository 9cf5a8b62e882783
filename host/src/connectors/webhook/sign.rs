//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the
//! receiver gets `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! keyed with the secret's decoded bytes, so it can verify with any of the
//! spec's libraries. The id stays the same across retries (it is the
//! `webhook.send` event's id), so receivers can drop duplicates.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::SigningKey;

/// The three headers of a signed request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Signed {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
}

/// Signs `body` (the exact bytes sent) as message `id` at `unix_seconds`.
pub(crate) fn sign(key: &SigningKey, id: &str, unix_seconds: u64, body: &[u8]) -> Signed {
    let timestamp = unix_seconds.to_string();
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256>>::new_from_slice(&key.0).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    Signed {
        id: id.to_string(),
        signature: format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ),
        timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::decode_secret;
    use super::*;

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_reference_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let s = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(s.timestamp, "1614265330");
        assert_eq!(
            s.signature,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let other = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232315}"#,
        );
        assert_ne!(other.signature, s.signature);
    }
}

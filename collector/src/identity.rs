//! Identity verification (docs/IDENTITY.md), as Intercom and Appcues offer it: the write key is
//! public, so without it anyone could send events as any user. A project with an
//! `identitySecret` expects each event that names a user to carry
//! `userHash = hex(HMAC-SHA256(identitySecret, userId))`, which only the customer's backend can
//! compute; [`check`] enforces it at ingest as the project's `identityEnforcement` says.
//! Endpoints that hand per-user data to the SDK use [`verify`] the same way.

use hmac::{Hmac, KeyInit, Mac};
use onramp::core::wire::{Event, WireError};
use sha2::Sha256;

use crate::config::IdentityEnforcement;
use crate::Project;

/// Whether `hash` is the hex HMAC-SHA256 of `user_id` under `secret` (compared in constant time).
pub fn verify(secret: &str, user_id: &str, hash: &str) -> bool {
    let Some(bytes) = from_hex(hash) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(user_id.as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Applies the project's enforcement to one event: unchanged when verification is off or the
/// hash is valid; stripped of its user id under `anonymous`; an error naming `userHash` under
/// `reject` (its `index` is filled in by the caller). The hash itself is never stored.
pub fn check(project: &Project, event: &mut Event) -> Result<(), WireError> {
    let hash = event.user_hash.take();
    let (Some(secret), Some(user)) = (project.identity_secret.as_deref(), event.user_id.as_deref()) else {
        return Ok(());
    };
    if hash.as_deref().is_some_and(|h| verify(secret, user, h)) {
        return Ok(());
    }
    match project.identity_enforcement {
        IdentityEnforcement::Off => Ok(()),
        IdentityEnforcement::Anonymous => {
            event.user_id = None;
            Ok(())
        }
        IdentityEnforcement::Reject => Err(WireError {
            index: None,
            field: "userHash",
            message: format!(
                "{} for userId {user:?}: this project verifies identities; pass userHash = \
                 hex(HMAC-SHA256(identity secret, userId)) from your backend to identify() (docs/IDENTITY.md)",
                if hash.is_some() { "does not match" } else { "is missing" }
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_documented_hash() {
        // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
        let hash = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(verify("Jefe", "what do ya want for nothing?", hash));
        assert!(verify("Jefe", "what do ya want for nothing?", &hash.to_uppercase()), "hex in either case");
        assert!(!verify("Jefe", "what do ya want for nothing!", hash));
        assert!(!verify("jefe", "what do ya want for nothing?", hash));
        assert!(!verify("Jefe", "what do ya want for nothing?", &hash[..62]));
        assert!(!verify("Jefe", "what do ya want for nothing?", "zz"));
    }
}

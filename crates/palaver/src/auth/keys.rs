//! API key secrets: `pal_` and 256 random bits (base64url), kept only as their SHA-256. A
//! secret that random needs no slow password hash: nothing can be guessed from its digest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// What every Palaver API key starts with (and no JWT does).
pub const KEY_PREFIX: &str = "pal_";

/// How many characters of a secret are kept in the clear, to tell keys apart in lists.
const SHOWN_CHARS: usize = 12;

/// A new secret: `pal_` and 43 base64url characters (32 random bytes).
pub fn mint_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Lower-case hex SHA-256 of a secret: what the store keeps and looks keys up by.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The part of a secret shown in lists (`pal_` and 8 characters).
pub fn shown_prefix(secret: &str) -> String {
    secret.chars().take(SHOWN_CHARS).collect()
}

/// Whether a bearer token is meant as an API key rather than a JWT.
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hash_to_hex() {
        let (a, b) = (mint_secret(), mint_secret());
        assert_ne!(a, b);
        assert!(is_api_key(&a) && a.len() == 4 + 43, "{a}");
        assert_eq!(shown_prefix(&a).len(), 12);
        let hash = hash_secret(&a);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(hash, hash_secret(&a));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
